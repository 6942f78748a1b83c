# Raw mode (--kernel/--initrd x2/--cmdline): the same enclave without an EIF.
run_vmm hello-raw --kernel "$DATA/bzImage" --initrd "$DATA/bootstrap.cpio" --initrd "$DATA/hello.cpio" \
    --cmdline "$(cat "$DATA/cmdline")" --cpus 2 --mem 256 --console -
[ "$rc" -eq 0 ] || fail "vmm exited $rc: $(head -n 1 "$err")"
has "$out" "^hello enclave" || fail "no 'hello enclave' on the console"
has "$out" "cpus online: 0-1 nproc: 2" || fail "the guest does not see 2 online CPUs"
has "$out" "root: bin dev proc run sys tmp" || fail "the app's root is not /rootfs"
pass "booted in ${took}s"
