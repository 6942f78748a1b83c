# Issue 5 acceptance 2a: an app that exits 3; the console shows the status
# and vmm exits 0 because the guest shut down cleanly.
run_vmm exit3 --kernel "$DATA/bzImage" --initrd "$DATA/bootstrap.cpio" --initrd "$DATA/exit3.cpio" \
    --cmdline "$(cat "$DATA/cmdline")" --cpus 1 --mem 256 --console -
[ "$rc" -eq 0 ] || fail "vmm exited $rc: $(head -n 1 "$err")"
has "$out" "^about to exit 3" || fail "the app did not run"
has "$out" "init: the app (/bin/sh) exited with status 3; rebooting" || fail "the console does not show status 3"
pass "status 3 on the console, vmm exit 0"
