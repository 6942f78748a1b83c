#!/bin/sh
# Regenerates the profile-*.pem fixtures of test_chain.cpp ("chain: algorithm
# profile" cases) with the openssl CLI (made with OpenSSL 3.0, Debian 12).
# Run from this directory: sh make-profile-fixtures.sh. Throw-away keys are
# generated in a temporary directory and discarded; the issuers are the
# committed openssl-root.pem (key p384-pkcs8.pem) and a self-signed RSA-2048
# root made from rsa-pkcs1.pem. Every certificate is valid for 3650 days
# from the moment it is made; the tests verify at 2027-06-01T00:00:00Z.
set -eu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

leaf_ext="$work/leaf.ext"
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n' > "$leaf_ext"
ca_ext="$work/ca.ext"
printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n' > "$ca_ext"
critical_ext="$work/critical.ext"
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n1.3.6.1.4.1.55555.1=critical,ASN1:UTF8String:unknown\n' > "$critical_ext"

# issue NAME SUBJECT KEY ISSUER_CERT ISSUER_KEY EXTFILE [x509 signing options...]
issue() {
    name=$1 subject=$2 key=$3 issuer=$4 issuer_key=$5 ext=$6
    shift 6
    openssl req -new -key "$key" -subj "$subject" -out "$work/$name.csr"
    openssl x509 -req -in "$work/$name.csr" -CA "$issuer" -CAkey "$issuer_key" -days 3650 \
        -set_serial "0x$(openssl rand -hex 8)" -extfile "$ext" "$@" -out "$name"
}

openssl ecparam -name prime256v1 -genkey -noout -out "$work/p256.pem"
openssl ecparam -name prime256v1 -genkey -noout -out "$work/ca.pem"
openssl ecparam -name secp521r1 -genkey -noout -out "$work/p521.pem"
openssl genrsa -out "$work/rsa1024.pem" 1024

# ECDSA signatures from the P-384 root with each hash.
for hash in sha1 sha224 sha256 sha512; do
    issue "profile-leaf-$hash.pem" "/O=qtbox tests/CN=leaf $hash" "$work/p256.pem" openssl-root.pem p384-pkcs8.pem "$leaf_ext" "-$hash"
done
# A SHA-1 signature one level up: a CA signed with ECDSA-SHA1 by the root,
# and a leaf it signs with ECDSA-SHA256.
issue profile-ca-sha1.pem "/O=qtbox tests/CN=CA sha1" "$work/ca.pem" openssl-root.pem p384-pkcs8.pem "$ca_ext" -sha1
issue profile-leaf-under-ca-sha1.pem "/O=qtbox tests/CN=leaf under CA sha1" "$work/p256.pem" profile-ca-sha1.pem "$work/ca.pem" "$leaf_ext" -sha256
# Keys outside the profile, one at each position of a chain.
issue profile-leaf-p521.pem "/O=qtbox tests/CN=leaf P-521" "$work/p521.pem" openssl-root.pem p384-pkcs8.pem "$leaf_ext" -sha384
issue profile-ca-rsa1024.pem "/O=qtbox tests/CN=CA RSA-1024" "$work/rsa1024.pem" openssl-root.pem p384-pkcs8.pem "$ca_ext" -sha384
openssl req -x509 -new -key secp256k1.pem -sha256 -subj "/O=qtbox tests/CN=root secp256k1" -days 3650 \
    -set_serial "0x$(openssl rand -hex 8)" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out profile-root-secp256k1.pem
# An extension mbedTLS does not know, marked critical.
issue profile-leaf-critical.pem "/O=qtbox tests/CN=leaf critical" "$work/p256.pem" openssl-root.pem p384-pkcs8.pem "$critical_ext" -sha384
# RSA-2048 root; PKCS#1 v1.5 and RSASSA-PSS signatures from it.
openssl req -x509 -new -key rsa-pkcs1.pem -sha256 -subj "/O=qtbox tests/CN=root RSA-2048" -days 3650 \
    -set_serial "0x$(openssl rand -hex 8)" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out profile-root-rsa.pem
issue profile-leaf-rsa-pkcs1.pem "/O=qtbox tests/CN=leaf RSA PKCS1" "$work/p256.pem" profile-root-rsa.pem rsa-pkcs1.pem "$leaf_ext" -sha256
issue profile-leaf-rsa-pss.pem "/O=qtbox tests/CN=leaf RSA PSS" "$work/p256.pem" profile-root-rsa.pem rsa-pkcs1.pem "$leaf_ext" -sha256 \
    -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32
