# The `qt enclave` lifecycle with real enclaves (docs/FORMATS.md §7):
#   - debug: start (waits for the heartbeat) -> query (SPEC keys) -> console
#     replays and follows the app's output, a second console is refused ->
#     stop -> query is [];
#   - production: start -> console fails with 32 -> kill -9 of its vmm: the
#     next query reports it gone with its reason, and its CID is free at once;
#   - an app that exits by itself: the enclave leaves query, and its end is
#     in <run>/enclaves/<id>/exit.json;
#   - the service account (issue 15): the vmm `qt enclave start` runs and a
#     qt-proxy root starts both run as qtbox under seccomp, and the proxy
#     reaches the debug enclave's vsock.sock in the state directory as that
#     account (an [[inbound]] rule by enclave id to the app's echo on vsock
#     port 5000).
# The images come from `qt enclave make-img` (nested.py).
[ "$(cat "$DATA/have-eif")" = yes ] || skip "this qtbox has no eif-build applet"
RUN=${QTBOX_RUN_DIR:-/run/qtbox}
export QTBOX_PKI_DIR="$TMPDIR_SCENARIO/pki"
export QTBOX_ENV_CONF="$TMPDIR_SCENARIO/env.conf"
printf 'hugepage_size:2\nmemory_mib:1024\ncpu_count:2\nmax_enclaves:2\n' >"$QTBOX_ENV_CONF"
qtbox qt pki init >/dev/null || fail "qt pki init failed"
if [ "$DATA" = /data ] && [ ! -s /etc/machine-id ]; then
    mkdir -p /etc
    echo 0f1e2d3c4b5a69788796a5b4c3d2e1f0 >/etc/machine-id
fi
qt() { qtbox qt "$@"; }
field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" | head -n 1 | tr -d '"'; }

start=$(now)
qt enclave start --eif "$DATA/ticker.eif" --cpus 1 --mem 256 --cid 10 --debug-mode >"$TMPDIR_SCENARIO/start.out" 2>"$TMPDIR_SCENARIO/start.err"
rc=$?
echo "-- qt enclave start (debug) -> $rc in $(elapsed "$start" "$(now)")s"; cat "$TMPDIR_SCENARIO/start.out" "$TMPDIR_SCENARIO/start.err"
[ "$rc" -eq 0 ] || fail "start (debug) exited $rc: $(head -n 1 "$TMPDIR_SCENARIO/start.err")"
id=$(tail -n 1 "$TMPDIR_SCENARIO/start.out" | field EnclaveID)
qt enclave query >"$TMPDIR_SCENARIO/query.out" || fail "query failed"
cat "$TMPDIR_SCENARIO/query.out"
for key in EnclaveID ProcessID EnclaveCID NumberOfCPUs MemoryMiB LaunchMode Status; do
    grep -q "\"$key\":" "$TMPDIR_SCENARIO/query.out" || fail "query has no $key"
done
grep -q '"LaunchMode":"debug","Status":"Running"' "$TMPDIR_SCENARIO/query.out" || fail "query: not a running debug enclave"

# The console: replay (the boot, init's lines) then the live ticks; a
# second reader is refused while the first is attached; SIGINT detaches.
qtbox qt enclave console --enclave-id "$id" >"$TMPDIR_SCENARIO/console.out" 2>"$TMPDIR_SCENARIO/console.err" &
console=$!
waited=0
until [ "$(grep -c '^app: tick' "$TMPDIR_SCENARIO/console.out")" -ge 2 ]; do
    waited=$((waited + 1)); [ "$waited" -lt 300 ] || break; sleep 0.1
done
timeout 30 qtbox qt enclave console --enclave-id "$id" >/dev/null 2>"$TMPDIR_SCENARIO/console2.err"
second=$?
# Ctrl-C detaches (the shell started it with SIGINT ignored; qt takes it anyway).
kill -INT "$console"
waited=0
while kill -0 "$console" 2>/dev/null && [ "$waited" -lt 100 ]; do waited=$((waited + 1)); sleep 0.1; done
kill -0 "$console" 2>/dev/null && { kill -KILL "$console"; fail "SIGINT did not detach the console"; }
wait "$console"; detach=$?
echo "-- console: $(grep -c '^app: tick' "$TMPDIR_SCENARIO/console.out") ticks; second reader -> $second: $(cat "$TMPDIR_SCENARIO/console2.err")"
grep -q "Linux version" "$TMPDIR_SCENARIO/console.out" || fail "the console did not replay the boot"
[ "$(grep -c '^app: tick' "$TMPDIR_SCENARIO/console.out")" -ge 2 ] || fail "the console did not follow the app: $(tail -n 5 "$TMPDIR_SCENARIO/console.out")"
[ "$second" -eq 33 ] || fail "a second console reader got $second, expected 33"
[ "$detach" -eq 0 ] || fail "Ctrl-C on the console exited $detach"

vmm_pid=$(qt enclave query | field ProcessID)
vmm_ids=$(service_ids vmm "$vmm_pid")
echo "-- $vmm_ids"
printf '[[inbound]]\nlisten = "127.0.0.1:16001"\nenclave_id = %s\nvsock_port = 5000\n' "$id" >"$TMPDIR_SCENARIO/proxy.toml"
qtbox qt-proxy --config "$TMPDIR_SCENARIO/proxy.toml" --af-vsock off >"$TMPDIR_SCENARIO/proxy.log" 2>&1 &
proxy_pid=$!
waited=0
until grep -q "ready: " "$TMPDIR_SCENARIO/proxy.log"; do
    waited=$((waited + 1))
    { [ "$waited" -lt 100 ] && kill -0 "$proxy_pid" 2>/dev/null; } || break
    sleep 0.1
done
proxy_ids=$(service_ids qt-proxy "$proxy_pid")
echo "-- $proxy_ids"
vsock-tool load tcp:127.0.0.1:16001 2 65536 >"$TMPDIR_SCENARIO/inbound.log" 2>&1
inbound_rc=$?
kill "$proxy_pid" 2>/dev/null
wait "$proxy_pid" 2>/dev/null
echo "-- inbound through qt-proxy -> $inbound_rc: $(tail -n 1 "$TMPDIR_SCENARIO/inbound.log")"
sed 's/^/   qt-proxy: /' "$TMPDIR_SCENARIO/proxy.log"
for verdict in "$vmm_ids" "$proxy_ids"; do
    ids_ok "$verdict" || { qt enclave stop --all >/dev/null 2>&1; fail "$verdict"; }
done
[ "$inbound_rc" -eq 0 ] || { qt enclave stop --all >/dev/null 2>&1; fail "qt-proxy did not reach the enclave by id: $(tail -n 1 "$TMPDIR_SCENARIO/inbound.log")"; }

qt enclave stop --enclave-id "$id" >"$TMPDIR_SCENARIO/stop.out" || fail "stop failed"
grep -q "^stop enclave $id successfully" "$TMPDIR_SCENARIO/stop.out" || fail "stop said: $(cat "$TMPDIR_SCENARIO/stop.out")"
[ "$(qt enclave query)" = "[]" ] || fail "query after stop is not []"

# Production: no console (32); kill -9 of its vmm is found and reported.
qt enclave start --eif "$DATA/ticker.eif" --cpus 1 --mem 256 --cid 11 >"$TMPDIR_SCENARIO/prod.out" 2>"$TMPDIR_SCENARIO/prod.err" \
    || fail "start (production) failed: $(head -n 1 "$TMPDIR_SCENARIO/prod.err")"
cat "$TMPDIR_SCENARIO/prod.out"
grep -q '"LaunchMode":"normal"' "$TMPDIR_SCENARIO/prod.out" || fail "a production enclave is not LaunchMode normal"
id=$(tail -n 1 "$TMPDIR_SCENARIO/prod.out" | field EnclaveID)
qt enclave console --enclave-id "$id" >/dev/null 2>"$TMPDIR_SCENARIO/prod-console.err"
[ $? -eq 32 ] || fail "console of a production enclave did not fail with 32: $(cat "$TMPDIR_SCENARIO/prod-console.err")"
pid=$(qt enclave query | field ProcessID)
kill -KILL "$pid"
sleep 1
qt enclave query >"$TMPDIR_SCENARIO/after-kill.out" 2>"$TMPDIR_SCENARIO/after-kill.err"
cat "$TMPDIR_SCENARIO/after-kill.err"
[ "$(cat "$TMPDIR_SCENARIO/after-kill.out")" = "[]" ] || fail "the killed enclave is still listed"
grep -q "ended: vmm was killed by signal 9" "$TMPDIR_SCENARIO/after-kill.err" || fail "query did not report the kill"
qt enclave start --eif "$DATA/ticker.eif" --cpus 1 --mem 256 --cid 11 >/dev/null 2>"$TMPDIR_SCENARIO/reuse.err" \
    || fail "the killed enclave's CID was not free: $(cat "$TMPDIR_SCENARIO/reuse.err")"
qt enclave stop --all >/dev/null || fail "stop --all failed"

# An app that ends by itself: the enclave leaves query; its end is kept.
qt enclave start --eif "$DATA/brief.eif" --cpus 1 --mem 256 --cid 12 >"$TMPDIR_SCENARIO/brief.out" 2>&1 \
    || fail "start of the brief app failed: $(cat "$TMPDIR_SCENARIO/brief.out")"
id=$(tail -n 1 "$TMPDIR_SCENARIO/brief.out" | field EnclaveID)
waited=0
until [ "$(qt enclave query 2>/dev/null)" = "[]" ]; do
    waited=$((waited + 1)); [ "$waited" -lt 60 ] || fail "the brief app's enclave did not leave query"; sleep 0.5
done
cat "$RUN/enclaves/$id/exit.json"
grep -q '"reason": "vmm exited with status 0"' "$RUN/enclaves/$id/exit.json" || fail "no clean exit recorded: $(cat "$RUN/enclaves/$id/exit.json")"
pass "debug: start, query, console replay+follow (second reader 33), inbound qt-proxy by id, vmm and qt-proxy as qtbox under seccomp, stop; production: console 32, kill -9 reported and CID reused; an app's own exit recorded"
