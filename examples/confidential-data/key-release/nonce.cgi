#!/bin/sh
# GET /cgi-bin/nonce: a fresh 32-byte challenge (hex). The key-release
# service remembers it until one document that carries it is presented
# (release.cgi), so a document can be used once and only for its nonce.
# State: $KEY_RELEASE_DIR (see release.cgi).
set -u
nonce=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
if [ ${#nonce} -ne 64 ] || ! : >"$KEY_RELEASE_DIR/nonces/$nonce"; then
    printf 'Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\nno nonce\n'
    exit 0
fi
printf 'Content-Type: text/plain\r\n\r\n%s' "$nonce"
