# Issue 14: the confidential-data workflow (examples/confidential-data),
# the same scripts scripts/demo runs. nested.py ran prepare.sh on the host
# (PKI, the signed image and its one-byte-changed rebuild, the policy, the
# sealed record); here the parent runs parent.sh (the object store, the
# key-release service, qt-proxy, three enclaves), then the refusals the demo
# does not show:
#   - the one changed byte changes PCR0 and PCR2;
#   - the production enclave's document, presented again with a nonce the
#     service issued for someone else: exit 15;
#   - the same document at a time past the policy's max_age_s: exit 13.
CD="$DATA/confidential-data"
[ -f "$CD/prepared/app.eif" ] || skip "no prepared confidential-data example (nested.py makes it with eif-build)"
if [ "$DATA" = /data ] && [ ! -s /etc/machine-id ]; then
    mkdir -p /etc
    echo 0f1e2d3c4b5a69788796a5b4c3d2e1f0 >/etc/machine-id
fi
field() { sed -n "s/.*\"$1\": *\"\([0-9a-f]*\)\".*/\1/p" "$2"; }
PREPARED="$CD/prepared"
for pcr in PCR0 PCR2; do
    [ "$(field $pcr "$PREPARED/app.json")" != "$(field $pcr "$PREPARED/tampered.json")" ] ||
        fail "one changed byte in the rootfs left $pcr unchanged"
done
[ "$(field PCR8 "$PREPARED/app.json")" = "$(field PCR8 "$PREPARED/tampered.json")" ] ||
    fail "the same signer gave two PCR8 values"

QTBOX=$(command -v qtbox) sh "$CD/example/parent.sh" "$PREPARED"
demo=$?
[ "$demo" -eq 0 ] || fail "parent.sh exited $demo (a ✗ step above)"
doc="$PREPARED/documents/production.doc"
[ -s "$doc" ] || fail "the key-release service kept no production document"

# Replayed with another nonce, through the service's own script.
export KEY_RELEASE_DIR="$PREPARED/key-release"
nonce=$(sh "$CD/example/key-release/nonce.cgi" | tr -d '\r' | tail -n 1)
[ ${#nonce} -eq 64 ] || fail "nonce.cgi issued no nonce: $nonce"
answer=$(QUERY_STRING="nonce=$nonce" CONTENT_LENGTH=$(wc -c <"$doc") PATH="$PREPARED/bin:$PATH" \
    sh "$CD/example/key-release/release.cgi" <"$doc" | tr -d '\r')
echo "-- replayed document with a fresh nonce: $(echo "$answer" | head -n 1) / $(tail -n 1 "$KEY_RELEASE_DIR/log")"
echo "$answer" | grep -q "^Status: 403" || fail "the replayed document was not refused"
tail -n 1 "$KEY_RELEASE_DIR/log" | grep -q "exit 15," || fail "the replay was not refused for its nonce (exit 15)"
[ ! -e "$KEY_RELEASE_DIR/nonces/$nonce" ] || fail "the refused request did not use up its nonce"

# Older than max_age_s (300): verified 301 s after it was made.
made=$(qtbox attest-verify "$doc" --root "$KEY_RELEASE_DIR/root.pem" | sed -n 's/.*"timestamp": *\([0-9]*\).*/\1/p')
[ -n "$made" ] || fail "attest-verify printed no timestamp for the production document"
late=$(date -u -d "@$((made / 1000 + 301))" +%Y-%m-%dT%H:%M:%SZ)
qtbox attest-verify "$doc" --quiet --root "$KEY_RELEASE_DIR/root.pem" --policy "$KEY_RELEASE_DIR/policy.json" --at "$late"
stale=$?
echo "-- the production document at $late (max_age_s 300): attest-verify -> $stale"
[ "$stale" -eq 13 ] || fail "a document older than max_age_s got $stale, expected 13"
pass "released only to the approved production image; debug mode and a one-byte rebuild refused (14), a replay with another nonce refused (15), a stale document refused (13)"
