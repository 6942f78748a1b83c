# Your own image's QTSM check: the image given to nested.py with --eif, booted
# as a production enclave (no console) against a fresh local PKI; its app
# sends an attestation document to the parent's listener on vsock port 7000
# (hybrid vsock: $QTBOX_RUN_DIR/vsock/3_7000), which attest-verify checks
# against the PKI root, the nonce given with --nonce, and the image's PCR0
# and PCR8 as eif-build describe computes them. The claims are printed.
[ -f "$DATA/user.eif" ] || skip "no image given (nested.py --eif FILE --nonce HEX attest-eif)"
[ -f "$DATA/user.nonce" ] || skip "no nonce given (nested.py --eif FILE --nonce HEX attest-eif)"
RUN=${QTBOX_RUN_DIR:-/run/qtbox}
mkdir -p "$RUN/vsock"
NONCE=$(cat "$DATA/user.nonce")
export QTBOX_PKI_DIR="$TMPDIR_SCENARIO/pki"
qtbox qt pki init >/dev/null || fail "qt pki init failed"
# vmm's instance id is /etc/machine-id; the simulated parent has none.
if [ "$DATA" = /data ] && [ ! -s /etc/machine-id ]; then
    mkdir -p /etc
    echo 0f1e2d3c4b5a69788796a5b4c3d2e1f0 >/etc/machine-id
fi
qtbox eif-build describe "$DATA/user.eif" >"$TMPDIR_SCENARIO/describe.json" || fail "eif-build describe failed"
PCR0=$(sed -n 's/.*"PCR0": "\([0-9a-f]*\)".*/\1/p' "$TMPDIR_SCENARIO/describe.json")
PCR8=$(sed -n 's/.*"PCR8": "\([0-9a-f]*\)".*/\1/p' "$TMPDIR_SCENARIO/describe.json")
[ -n "$PCR0" ] || fail "no PCR0 in eif-build describe's output"
pins="--pcr 0=$PCR0"
[ -n "$PCR8" ] && pins="$pins --pcr 8=$PCR8"

vsock-tool receive "unix:$RUN/vsock/3_7000" "$TMPDIR_SCENARIO/doc.cose" >"$TMPDIR_SCENARIO/receive.log" 2>&1 &
receiver=$!
until grep -q serving "$TMPDIR_SCENARIO/receive.log"; do sleep 0.1; done
run_vmm attest --eif "$DATA/user.eif" --cpus 2 --mem 512
kill "$receiver" 2>/dev/null
wait "$receiver" 2>/dev/null
[ "$rc" -eq 0 ] || fail "vmm exited $rc: $(grep -v '^vmm: PCR' "$err" | head -n 1)"
[ -s "$TMPDIR_SCENARIO/doc.cose" ] || fail "the enclave sent no document to vsock port 7000"
echo "-- attest-verify $TMPDIR_SCENARIO/doc.cose --root \$QTBOX_PKI_DIR/root.pem --nonce $NONCE $pins"
qtbox attest-verify "$TMPDIR_SCENARIO/doc.cose" --root "$QTBOX_PKI_DIR/root.pem" --nonce "$NONCE" $pins
verdict=$?
[ "$verdict" -eq 0 ] || fail "attest-verify exited $verdict"
pass "the enclave's own document verified: local root, nonce, PCR0${PCR8:+ and PCR8} of the image"
