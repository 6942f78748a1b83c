# Issue 11 acceptance 1, 3 and 4 (docs/FORMATS.md §6, §11): the enclave's
# vsock in volume, both ways, through the VMM's virtio-vsock device.
#   - vmm --ready-fd says "ready" once the heartbeat arrived;
#   - the enclave's clock, set from the heartbeat, is within a second of
#     the parent's;
#   - a guest connect to an unserved port fails fast with a reset;
#   - enclave -> parent: 10 streams of 1 MiB echoed byte-identical;
#   - parent -> enclave: 100 parallel streams of 1 MiB, byte-identical
#     (sha256 of each printed);
#   - killing one parent-side peer mid-stream ends only its connection;
#   - SIGTERM stops the VMM (143);
#   - vmm runs as the service account qtbox under seccomp, and reaches the
#     parent's listeners (0660, in qtbox's group) as it (issue 15).
[ "$(cat "$DATA/have-eif")" = yes ] || skip "this qtbox has no eif-build applet"
RUN=${QTBOX_RUN_DIR:-/run/qtbox}
SOCKET="$RUN/enclaves/cid-4/vsock.sock"
mkdir -p "$RUN/vsock"
vsock-tool serve "unix:$RUN/vsock/3_5001" >"$TMPDIR_SCENARIO/echo.log" 2>&1 &
echo_pid=$!
vsock-tool clock-check "unix:$RUN/vsock/3_5002" >"$TMPDIR_SCENARIO/clock.log" 2>&1 &
clock_pid=$!

out="$TMPDIR_SCENARIO/vsock.out"
err="$TMPDIR_SCENARIO/vsock.err"
ready="$TMPDIR_SCENARIO/ready"
start=$(now)
echo "-- vmm started at ${start}s"
vmm --eif "$DATA/vsock.eif" --cpus 2 --mem 512 --debug-mode --console - --ready-fd 3 \
    3>"$ready" >"$out" 2>"$err" </dev/null &
vmm_pid=$!
stop_all() {
    kill "$echo_pid" "$clock_pid" 2>/dev/null
    kill -TERM "$vmm_pid" 2>/dev/null
}
waited=0
until grep -q "^enclave: ready" "$out"; do
    waited=$((waited + 1))
    if [ "$waited" -gt 1200 ] || ! kill -0 "$vmm_pid" 2>/dev/null; then
        stop_all; watch_vmm "$vmm_pid"
        echo "-- stdout:"; cat "$out"; echo "-- stderr:"; cat "$err"
        fail "the enclave never said it was ready (vmm $rc)"
    fi
    sleep 0.1
done
echo "-- enclave ready after $(elapsed "$start" "$(now)")s"
vmm_ids=$(service_ids vmm "$vmm_pid")
echo "-- $vmm_ids"
grep -qx "ready" "$ready" || { stop_all; fail "nothing or not 'ready' on --ready-fd: $(cat "$ready")"; }

# Parent -> enclave, 100 at once.
vsock-tool load "hybrid:$SOCKET:5000" 100 1048576 >"$TMPDIR_SCENARIO/load.log" 2>&1
load_rc=$?
tail -n 3 "$TMPDIR_SCENARIO/load.log"
grep -c "sha256" "$TMPDIR_SCENARIO/load.log" | sed 's/^/-- streams with a digest: /'

# Two long streams; the first one's parent-side peer is killed mid-stream.
vsock-tool load "hybrid:$SOCKET:5000" 1 33554432 >"$TMPDIR_SCENARIO/killed.log" 2>&1 &
killed_pid=$!
vsock-tool load "hybrid:$SOCKET:5000" 1 8388608 >"$TMPDIR_SCENARIO/kept.log" 2>&1 &
kept_pid=$!
sleep 1
kill -KILL "$killed_pid"
wait "$kept_pid"
kept_rc=$?
cat "$TMPDIR_SCENARIO/kept.log"
# The enclave still serves new connections afterwards.
vsock-tool load "hybrid:$SOCKET:5000" 4 1048576 >"$TMPDIR_SCENARIO/after.log" 2>&1
after_rc=$?
tail -n 1 "$TMPDIR_SCENARIO/after.log"

kill -TERM "$vmm_pid"
watch_vmm "$vmm_pid"
kill "$echo_pid" "$clock_pid" 2>/dev/null
echo "-- vmm -> $rc; stdout:"; cat "$out"; echo "-- stderr:"; cat "$err"
echo "-- clock-check:"; cat "$TMPDIR_SCENARIO/clock.log"

[ "$load_rc" -eq 0 ] && grep -q "^load: 100 of 100 connections echoed 1048576 bytes" "$TMPDIR_SCENARIO/load.log" \
    || fail "parent -> enclave: $(tail -n 1 "$TMPDIR_SCENARIO/load.log")"
[ "$kept_rc" -eq 0 ] || fail "killing one parent peer broke another stream: $(tail -n 1 "$TMPDIR_SCENARIO/kept.log")"
[ "$after_rc" -eq 0 ] || fail "after a peer was killed: $(tail -n 1 "$TMPDIR_SCENARIO/after.log")"
has "$out" "^load: 10 of 10 connections echoed 1048576 bytes" || fail "enclave -> parent streams failed"
has "$out" "^expect-reset: Connection reset by peer after" || fail "a connect to an unserved port did not get a reset"
reset_ms=$(sed -n 's/^expect-reset: Connection reset by peer after \([0-9.]*\) ms.*/\1/p' "$out")
awk -v ms="$reset_ms" 'BEGIN { exit !(ms < 1000) }' || fail "the reset took ${reset_ms} ms"
skew=$(sed -n 's/^skew_ms //p' "$TMPDIR_SCENARIO/clock.log")
[ -n "$skew" ] || fail "the enclave's clock never reached the parent"
awk -v s="$skew" 'BEGIN { exit !(s < 1000 && s > -1000) }' || fail "the enclave's clock is ${skew} ms off the parent's"
[ "$rc" -eq 143 ] || fail "vmm exited $rc after SIGTERM, expected 143"
ids_ok "$vmm_ids" || fail "$vmm_ids"
peer=$(peer_ids "the clock's sender (vmm)" "$TMPDIR_SCENARIO/clock.log")
ids_ok "$peer" || fail "$peer"
pass "100 x 1 MiB parent->enclave and 10 x 1 MiB enclave->parent byte-identical; reset in ${reset_ms} ms; clock ${skew} ms off; a killed peer ended only its stream; vmm ran as qtbox under seccomp"
