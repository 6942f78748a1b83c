# Issue 5 acceptance 2b: a kernel that panics (no init to run) makes vmm exit
# non-zero within 30 s with the panic text in its log. The 30 s are counted
# from the panic banner on the console, so that the (emulated, slow) boot up
# to the panic does not count. Until the panic, vmm runs as the service
# account qtbox under seccomp (read once it says so, issue 15).
out="$TMPDIR_SCENARIO/panic.out"
err="$TMPDIR_SCENARIO/panic.err"
start=$(now)
echo "-- vmm started at ${start}s"
vmm --kernel "$DATA/bzImage" --initrd "$DATA/exit3.cpio" \
    --cmdline "$(cat "$DATA/cmdline") init=/nonexistent rdinit=/nonexistent" --cpus 1 --mem 256 --console - \
    >"$out" 2>"$err" </dev/null &
pid=$!
panicked=""
vmm_ids=""
checked=""
while kill -0 "$pid" 2>/dev/null && [ -z "$panicked" ]; do
    if [ -z "$checked" ] && grep -q "^vmm: running as user qtbox" "$err"; then
        vmm_ids=$(service_ids vmm "$pid")
        checked=yes
        echo "-- $vmm_ids"
    fi
    if grep -q "Kernel panic - not syncing" "$out"; then
        panicked=$(now)
        echo "-- panic banner on the console at ${panicked}s"
    fi
    sleep 0.1
done
watch_vmm "$pid"
ended=$(now)
echo "-- vmm -> $rc"; echo "-- stdout:"; cat "$out"; echo "-- stderr:"; cat "$err"
[ "$rc" -eq 3 ] || fail "vmm exited $rc, expected 3"
has "$err" "^vmm: guest kernel panic: Kernel panic - not syncing" || fail "no panic line in vmm's log"
if [ -z "$checked" ]; then
    if [ -n "$SERVICE_UID" ]; then
        vmm_ids="vmm never said it runs as qtbox: $(head -n 3 "$err" | tr '\n' ' ')"
    else
        vmm_ids=$(ids_of vmm "" "" "")
    fi
fi
ids_ok "$vmm_ids" || fail "$vmm_ids"
[ -n "$panicked" ] || panicked=$ended
after=$(elapsed "$panicked" "$ended")
awk -v t="$after" 'BEGIN { exit !(t < 30) }' || fail "vmm exited ${after}s after the panic"
pass "exit 3 ${after}s after the panic ($(elapsed "$start" "$ended")s in all): $(head -n 1 "$err")"
