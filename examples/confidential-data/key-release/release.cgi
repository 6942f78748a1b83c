#!/bin/sh
# POST /cgi-bin/release?nonce=HEX, body: an attestation document (COSE,
# base64 or raw).
# The key-release service's one decision, the step a cloud KMS takes with
# a "recipient" attestation: verify the document with attest-verify against
#   - the local attestation root (qt pki init),
#   - the data owner's policy (PCR0 and PCR8 of the approved image,
#     max_age_s),
#   - a nonce this service issued (nonce.cgi) and has not seen used,
# and only then answer with the data key sealed to the public key in the
# document (attest-verify --seal): 200 and the envelope. Anything else
# gets 403, and the service's log says why, with attest-verify's exit status.
#
# State, $KEY_RELEASE_DIR: root.pem, policy.json, data.key (the data
# owner's key, 32 bytes), nonces/ (issued, unused), log, last.doc (the last
# document presented, kept for audit).
set -u
dir=$KEY_RELEASE_DIR
work=$(mktemp -d "$dir/request.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT

refuse() {
    # PCR values are 96 hex digits; their first 16 say enough here.
    set -- "$(echo "$*" | sed 's/\([0-9a-f]\{16\}\)[0-9a-f]\{80\}/\1…/g')"
    echo "key-release: ✗ refused: $*" >>"$dir/log"
    printf 'Status: 403 Forbidden\r\nContent-Type: text/plain\r\n\r\nrefused: %s\n' "$*"
    exit 0
}

nonce=${QUERY_STRING#nonce=}
case "$nonce" in
    *[!0-9a-f]*|"") refuse "the request names no nonce" ;;
esac
[ ${#nonce} -eq 64 ] || refuse "the request names no nonce"
# Taking the nonce is one rename: of two requests with the same nonce,
# exactly one gets it.
mv "$dir/nonces/$nonce" "$work/nonce" 2>/dev/null || refuse "nonce ${nonce%"${nonce#????????????????}"}… was not issued here, or was used already"

length=${CONTENT_LENGTH:-0}
case "$length" in *[!0-9]*|"") refuse "no document" ;; esac
[ "$length" -gt 0 ] && [ "$length" -le 65536 ] || refuse "no document, or one over 64 KiB"
head -c "$length" >"$work/document"
cp "$work/document" "$dir/last.doc"

attest-verify "$work/document" --quiet --root "$dir/root.pem" --policy "$dir/policy.json" \
    --nonce "$nonce" --seal "$dir/data.key" --seal-out "$work/sealed" 2>"$work/verdict"
status=$?
case $status in
    0) ;;
    10) refuse "exit 10, a malformed document: $(head -n 1 "$work/verdict")" ;;
    11) refuse "exit 11, the chain does not lead to our root: $(head -n 1 "$work/verdict")" ;;
    12) refuse "exit 12, a bad signature: $(head -n 1 "$work/verdict")" ;;
    13) refuse "exit 13, too old for the policy's max_age_s (or expired): $(head -n 1 "$work/verdict")" ;;
    14) refuse "exit 14, a PCR differs from the policy: $(head -n 1 "$work/verdict")" ;;
    15) refuse "exit 15, the nonce differs: $(head -n 1 "$work/verdict")" ;;
    *) refuse "exit $status: $(head -n 1 "$work/verdict")" ;;
esac
echo "key-release: ✓ released the data key, sealed to the attested key (nonce ${nonce%"${nonce#????????????????}"}…)" >>"$dir/log"
printf 'Content-Type: application/octet-stream\r\n\r\n'
cat "$work/sealed"
