# Exits that need a genuine KVM: a triple fault stops the VM with status 3.
run_vmm triple --kernel "$DATA/tiny-triple.bz" --initrd "$DATA/tiny-initrd" --cmdline x --mem 128 --console -
[ "$rc" -eq 3 ] || fail "triple fault: vmm exited $rc, expected 3"
has "$err" "^vmm: guest crashed: triple fault on vCPU 0" || fail "triple fault: unclear error"
run_vmm smp --kernel "$DATA/tiny-hello.bz" --initrd "$DATA/tiny-initrd" --cmdline tiny-smp --cpus 4 --mem 128 --console -
[ "$rc" -eq 0 ] || fail "4 vCPUs: vmm exited $rc"
has "$out" "^tiny-smp" || fail "4 vCPUs: no output"
pass "triple fault -> 3; 4 vCPUs -> 0"
