#!/bin/sh
# The confidential-data app: runs inside the enclave (the image's
# entrypoint). The parent, which can read nothing in here, relays two
# services through qt-proxy:
#   127.0.0.1:8001  the object store: the sealed record in, the report out
#   127.0.0.1:8002  the key-release service: a nonce, then the data key
#                   sealed to this enclave's fresh key pair, once its
#                   attestation document satisfies the data owner's policy
# The app
#   1. fetches the sealed record (AES-256-GCM, record-tool's format);
#   2. asks the key-release service for a nonce;
#   3. makes a key pair (the private key never leaves enclave memory);
#   4. asks the QTSM for an attestation document carrying the nonce and the
#      public key, and sends it to the key-release service;
#   5. opens the sealed data key it gets back (qtsm open), decrypts the
#      record, and reports it redacted: the card number, the CVV and the
#      holder's name never leave the enclave.
# Everything it says goes to its console (which nobody can read in a
# production enclave) and into a report it uploads to the object store,
# which is all the parent ever sees. Then it waits to be stopped.
set -u
OBJECT_STORE=http://127.0.0.1:8001
KEY_SERVICE=http://127.0.0.1:8002
WORK=/tmp/app
mkdir -p "$WORK"
chmod 700 "$WORK"
: >"$WORK/report"

say() { echo "app: $*" | tee -a "$WORK/report"; }
finish() {
    wget -q -O /dev/null --post-file "$WORK/report" "$OBJECT_STORE/cgi-bin/put?name=report" ||
        echo "app: could not upload the report"
    rm -f "$WORK/datakey" "$WORK/key.pem" "$WORK/record"
    echo "app: done; waiting to be stopped"
    while :; do sleep 3600; done
}

qt-proxy --enclave --config /app/proxy.toml 2>"$WORK/qt-proxy.log" &

# 1. The sealed record. The first tries may come before qt-proxy listens.
tries=0
until wget -q -O "$WORK/record.sealed" "$OBJECT_STORE/records/card-0001.sealed" 2>"$WORK/wget.err"; do
    tries=$((tries + 1))
    if [ "$tries" -ge 50 ]; then
        say "✗ cannot fetch the sealed record: $(cat "$WORK/wget.err")"
        finish
    fi
    sleep 0.2
done
say "fetched the sealed record: $(wc -c <"$WORK/record.sealed") bytes, sha256 $(sha256sum "$WORK/record.sealed" | cut -c1-16)…"

# 2. The key-release service's challenge.
if ! nonce=$(wget -q -O - "$KEY_SERVICE/cgi-bin/nonce" 2>"$WORK/wget.err"); then
    say "✗ no nonce from the key-release service: $(cat "$WORK/wget.err")"
    finish
fi

# 3 and 4. A fresh key pair, and a document that binds its public key to
# this image's measurements and the service's nonce.
qtsm keygen --out "$WORK/key.pem" >"$WORK/public.hex" || { say "✗ qtsm keygen failed"; finish; }
if ! qtsm attest --nonce "$nonce" --public-key "@$WORK/public.hex" >"$WORK/document.cose"; then
    say "✗ the QTSM gave no attestation document"
    finish
fi
say "attested: a $(wc -c <"$WORK/document.cose")-byte document for nonce ${nonce%"${nonce#????????????????}"}… with a fresh P-384 public key"

# As base64: busybox wget posts a file as text (it would stop at a NUL).
base64 -w 0 "$WORK/document.cose" >"$WORK/document.b64"
if ! wget -q -O "$WORK/datakey.sealed" --post-file "$WORK/document.b64" \
    "$KEY_SERVICE/cgi-bin/release?nonce=$nonce" 2>"$WORK/wget.err"; then
    say "✗ key release refused: $(sed 's/^wget: //' "$WORK/wget.err")"
    finish
fi
say "got the data key, sealed to this enclave's key ($(wc -c <"$WORK/datakey.sealed") bytes)"

# 5. Open, decrypt, redact.
if ! qtsm open "$WORK/key.pem" <"$WORK/datakey.sealed" >"$WORK/datakey"; then
    say "✗ cannot open the sealed data key"
    finish
fi
if ! record-tool decrypt "$WORK/datakey" <"$WORK/record.sealed" >"$WORK/record" 2>"$WORK/decrypt.err"; then
    say "✗ $(cat "$WORK/decrypt.err")"
    finish
fi
say "✓ decrypted the record inside the enclave; redacted:"
awk -F': ' '
    $1 == "card_number" { digits = $2; gsub(/[^0-9]/, "", digits)
                          print $1 ": **** **** **** " substr(digits, length(digits) - 3); next }
    $1 == "cvv"         { print $1 ": ***"; next }
    $1 == "holder"      { n = split($2, word, " "); initials = ""
                          for (i = 1; i <= n; i++) initials = initials (i > 1 ? " " : "") substr(word[i], 1, 1) "."
                          print $1 ": " initials; next }
                        { print }' "$WORK/record" | sed 's/^/    /' | tee -a "$WORK/report"
finish
