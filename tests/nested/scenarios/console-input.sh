# COM1 input with interrupts (GSI 4 through the DSDT's PNP0501 entry): the
# app asks for a line on its console (ttyS0) and echoes it; the line is
# typed into vmm's stdin only once the app is waiting for it. While it
# waits, vmm runs as the service account qtbox under seccomp (issue 15).
out="$TMPDIR_SCENARIO/input.out"
err="$TMPDIR_SCENARIO/input.err"
mkfifo "$TMPDIR_SCENARIO/stdin"
vmm --kernel "$DATA/bzImage" --initrd "$DATA/bootstrap.cpio" --initrd "$DATA/input.cpio" \
    --cmdline "$(cat "$DATA/cmdline")" --cpus 2 --mem 256 --console - <"$TMPDIR_SCENARIO/stdin" >"$out" 2>"$err" &
pid=$!
exec 3>"$TMPDIR_SCENARIO/stdin"
tries=0
until grep -q "type a line" "$out"; do
    tries=$((tries + 1))
    if [ "$tries" -gt 1000 ] || ! kill -0 "$pid" 2>/dev/null; then
        exec 3>&-
        cat "$out" "$err"
        fail "the app never asked for input"
    fi
    sleep 0.1
done
vmm_ids=$(service_ids vmm "$pid")
echo "-- $vmm_ids"
echo "hello from the parent" >&3
watch_vmm "$pid"
exec 3>&-
echo "-- vmm -> $rc"; echo "-- stdout:"; cat "$out"; echo "-- stderr:"; cat "$err"
[ "$rc" -eq 0 ] || fail "vmm exited $rc"
has "$out" "got: hello from the parent" || fail "the line did not reach the app"
ids_ok "$vmm_ids" || fail "$vmm_ids"
pass "a line typed on vmm's stdin reached the app through ttyS0; vmm ran as qtbox under seccomp"
