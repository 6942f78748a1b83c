# Issue 5 acceptance 2b: a kernel that panics (no init to run) makes vmm exit
# non-zero within 30 s with the panic text in its log.
run_vmm panic --kernel "$DATA/bzImage" --initrd "$DATA/exit3.cpio" \
    --cmdline "$(cat "$DATA/cmdline") init=/nonexistent rdinit=/nonexistent" --cpus 1 --mem 256 --console -
[ "$rc" -eq 3 ] || fail "vmm exited $rc, expected 3"
has "$err" "^vmm: guest kernel panic: Kernel panic - not syncing" || fail "no panic line in vmm's log"
awk -v t="$took" 'BEGIN { exit !(t < 30) }' || fail "took ${took}s"
pass "exit 3 after ${took}s: $(head -n 1 "$err")"
