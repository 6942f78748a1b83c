# Issue 11 acceptance 2: qt-proxy on the real vsock data path, both ways.
#   - outbound: inside the enclave, `qt-proxy --enclave` gives busybox wget
#     127.0.0.1:8000; the parent's qt-proxy forwards vsock port 8000 to a
#     loopback HTTP server (busybox httpd); the fetched file is
#     sha256-identical;
#   - inbound: a parent TCP client reaches an echo server on the enclave's
#     vsock port 6000 through the parent's qt-proxy (127.0.0.1:16000);
#   - both vmm and the parent's qt-proxy run as the service account qtbox
#     under seccomp: qt-proxy reaches vmm's vsock.sock, vmm the proxy's
#     3_8000, as that account (issue 15).
[ "$(cat "$DATA/have-eif")" = yes ] || skip "this qtbox has no eif-build applet"
RUN=${QTBOX_RUN_DIR:-/run/qtbox}
mkdir -p "$TMPDIR_SCENARIO/www"
vsock-tool stream - 11 4194304 >"$TMPDIR_SCENARIO/www/file"
want=$(sha256sum "$TMPDIR_SCENARIO/www/file" | cut -d' ' -f1)
httpd -f -p 127.0.0.1:18080 -h "$TMPDIR_SCENARIO/www" &
httpd_pid=$!
qt-proxy --config "$DATA/qt-proxy.toml" --af-vsock off >"$TMPDIR_SCENARIO/proxy.log" 2>&1 &
proxy_pid=$!

out="$TMPDIR_SCENARIO/proxy.out"
err="$TMPDIR_SCENARIO/proxy.err"
start=$(now)
echo "-- vmm started at ${start}s"
vmm --eif "$DATA/proxy.eif" --cpus 2 --mem 512 --debug-mode --console - >"$out" 2>"$err" </dev/null &
vmm_pid=$!
waited=0
until grep -q "^enclave: ready" "$out"; do
    waited=$((waited + 1))
    if [ "$waited" -gt 1200 ] || ! kill -0 "$vmm_pid" 2>/dev/null; then
        kill "$httpd_pid" "$proxy_pid" 2>/dev/null; kill -TERM "$vmm_pid" 2>/dev/null; watch_vmm "$vmm_pid"
        echo "-- stdout:"; cat "$out"; echo "-- stderr:"; cat "$err"; echo "-- qt-proxy:"; cat "$TMPDIR_SCENARIO/proxy.log"
        fail "the enclave never said it was ready (vmm $rc)"
    fi
    sleep 0.1
done
vmm_ids=$(service_ids vmm "$vmm_pid")
echo "-- $vmm_ids"
if grep -q "ready: " "$TMPDIR_SCENARIO/proxy.log"; then
    proxy_ids=$(service_ids qt-proxy "$proxy_pid")
else
    proxy_ids="qt-proxy is not ready: $(cat "$TMPDIR_SCENARIO/proxy.log")"
fi
echo "-- $proxy_ids"
vsock-tool load tcp:127.0.0.1:16000 5 1048576 >"$TMPDIR_SCENARIO/inbound.log" 2>&1
inbound_rc=$?
tail -n 1 "$TMPDIR_SCENARIO/inbound.log"
kill -TERM "$vmm_pid"
watch_vmm "$vmm_pid"
kill "$httpd_pid" "$proxy_pid" 2>/dev/null
echo "-- vmm -> $rc; stdout:"; cat "$out"; echo "-- stderr:"; cat "$err"; echo "-- qt-proxy:"; cat "$TMPDIR_SCENARIO/proxy.log"

got=$(sed -n 's/^enclave: fetched \([0-9a-f]\{64\}\) .*/\1/p' "$out")
[ -n "$got" ] || fail "the enclave did not fetch the file through qt-proxy"
[ "$got" = "$want" ] || fail "the fetched file differs: sha256 $got, expected $want"
[ "$inbound_rc" -eq 0 ] || fail "inbound through qt-proxy: $(tail -n 1 "$TMPDIR_SCENARIO/inbound.log")"
ids_ok "$vmm_ids" || fail "$vmm_ids"
ids_ok "$proxy_ids" || fail "$proxy_ids"
pass "wget in the enclave fetched 4 MiB through both qt-proxies (sha256 $want); 5 x 1 MiB inbound echoed byte-identical; vmm and qt-proxy ran as qtbox under seccomp"
