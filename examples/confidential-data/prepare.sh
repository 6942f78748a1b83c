#!/bin/sh
# Steps 3-5 of the confidential-data workflow: what the data security admin
# and the data owner do before the parent starts anything.
#   3. the local attestation PKI (qt pki init): the root a relying party
#      pins, and this parent's CA, which certifies each enclave's QTSM key;
#   4. the app's image, signed (build-image.sh), and the same image with one
#      byte changed; their PCR0 and PCR8 are what the policy approves;
#   5. the policy (PCR0 and PCR8 of the approved image, max_age_s), the data
#      key, and the record sealed under it for the object store.
# Usage: prepare.sh OUT   (OUT must not exist yet, or be empty)
# Environment: QTBOX, QTBOX_BLOBS (see build-image.sh).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$1
. "$HERE/lib.sh"
: "${QTBOX:?QTBOX must name the static qtbox binary}"
mkdir -p "$OUT"
[ -z "$(ls -A "$OUT")" ] || { echo "prepare.sh: $OUT is not empty" >&2; exit 2; }
field() { sed -n "s/.*\"$1\": *\"\([0-9a-f]*\)\".*/\1/p" "$2"; }

step_start
QTBOX_PKI_DIR="$OUT/pki" "$QTBOX" qt pki init >/dev/null
root=$(openssl x509 -in "$OUT/pki/root.pem" -outform DER | sha256sum | cut -c1-16)
step_ok 3 "local attestation PKI (qt pki init): root certificate sha256 $root…"

step_start
openssl ecparam -name secp384r1 -genkey -noout -out "$OUT/signing.key" 2>/dev/null
openssl req -new -x509 -key "$OUT/signing.key" -subj "/CN=confidential-data image signer" -days 2 \
    -out "$OUT/signing.pem" 2>/dev/null
"$HERE/build-image.sh" "$OUT" "$OUT/signing.key" "$OUT/signing.pem"
"$HERE/build-image.sh" "$OUT" "$OUT/signing.key" "$OUT/signing.pem" --tamper
PCR0=$(field PCR0 "$OUT/app.json") PCR2=$(field PCR2 "$OUT/app.json") PCR8=$(field PCR8 "$OUT/app.json")
[ ${#PCR0} -eq 96 ] && [ ${#PCR8} -eq 96 ] || { echo "prepare.sh: make-img printed no PCR0/PCR8" >&2; exit 1; }
step_ok 4 "OCI image (umoci, offline) -> signed EIF (qt enclave make-img), $(wc -c <"$OUT/app.eif") bytes"
echo "    PCR0 $PCR0"
echo "    PCR8 $PCR8"
echo "    the rebuilt image with one byte changed:"
echo "    PCR0 $(field PCR0 "$OUT/tampered.json")"
echo "    PCR2 $(field PCR2 "$OUT/tampered.json") (was ${PCR2%"${PCR2#????????????????}"}…)"

step_start
mkdir -p "$OUT/key-release" "$OUT/object-store/records"
cat >"$OUT/key-release/policy.json" <<POLICY
{
  "pcrs": {
    "0": ["$PCR0"],
    "8": ["$PCR8"]
  },
  "max_age_s": 300
}
POLICY
cp "$OUT/pki/root.pem" "$OUT/key-release/root.pem"
# The data owner's side: a data key, and the record sealed under it. In
# QingTian's flow the key would live in KMS; here the key-release service
# holds it, and releases it only sealed to an attested enclave key.
(umask 077 && head -c 32 /dev/urandom >"$OUT/key-release/data.key")
cat >"$OUT/record.txt" <<'RECORD'
holder: Alice Example
card_number: 4111 1111 1111 1111
expiry: 12/29
cvv: 123
credit_limit_eur: 5000
RECORD
"$OUT/record-tool" encrypt "$OUT/key-release/data.key" <"$OUT/record.txt" >"$OUT/object-store/records/card-0001.sealed"
rm "$OUT/record.txt"
step_ok 5 "policy: PCR0 and PCR8 of the approved image, max_age_s 300; the bank-card record sealed (AES-256-GCM) for the object store"
