# Issue 5 acceptance 1: an EIF built by eif-build boots with 2 vCPUs, shows
# the kernel log and "hello enclave", sees 2 CPUs, and vmm exits 0.
[ "$(cat "$DATA/have-eif")" = yes ] || skip "this qtbox has no eif-build applet"
run_vmm hello --eif "$DATA/hello.eif" --cpus 2 --mem 256 --debug-mode --console -
[ "$rc" -eq 0 ] || fail "vmm exited $rc: $(head -n 1 "$err")"
has "$out" "Linux version" || fail "no kernel boot log on the console"
has "$out" "^hello enclave" || fail "no 'hello enclave' on the console"
has "$out" "cpus online: 0-1 nproc: 2" || fail "the guest does not see 2 online CPUs"
has "$out" "lo: unknown" || fail "lo is not up in the enclave"
has "$out" "init: the app (/bin/sh) exited with status 0" || fail "init did not report the app's status"
pass "booted in ${took}s, 2 CPUs, vmm exit 0"
