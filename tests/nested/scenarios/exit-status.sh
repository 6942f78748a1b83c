# Issue 5 acceptance 2a: an app that exits 3; the console shows the status
# and vmm exits 0 because the guest shut down cleanly. Then init's duties as
# PID 1: an orphan is reaped, and SIGTERM sent to PID 1 reaches the app.
run_vmm exit3 --kernel "$DATA/bzImage" --initrd "$DATA/bootstrap.cpio" --initrd "$DATA/exit3.cpio" \
    --cmdline "$(cat "$DATA/cmdline")" --cpus 1 --mem 256 --console -
[ "$rc" -eq 0 ] || fail "vmm exited $rc: $(head -n 1 "$err")"
has "$out" "^about to exit 3" || fail "the app did not run"
has "$out" "init: the app (/bin/sh) exited with status 3; rebooting" || fail "the console does not show status 3"
run_vmm sigterm --kernel "$DATA/bzImage" --initrd "$DATA/bootstrap.cpio" --initrd "$DATA/sigterm.cpio" \
    --cmdline "$(cat "$DATA/cmdline")" --cpus 1 --mem 256 --console -
[ "$rc" -eq 0 ] || fail "SIGTERM run: vmm exited $rc"
has "$out" "zombies: none" || fail "init left a zombie"
has "$out" "app: got SIGTERM" || fail "SIGTERM to PID 1 did not reach the app"
has "$out" "init: the app (/bin/sh) exited with status 7; rebooting" || fail "init did not report the app's status 7"
pass "status 3 on the console, vmm exit 0; orphans reaped; SIGTERM forwarded"
