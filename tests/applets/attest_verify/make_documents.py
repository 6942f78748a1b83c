#!/usr/bin/python3
"""Builds QingTian-profile attestation documents (docs/FORMATS.md §4) for the
attest-verify golden tests and benchmark, independently of qtbox: a throw-away
P-384 chain root -> CA -> leaf made with python3-cryptography, the payload
encoded here byte for byte as docs/FORMATS.md §4 lays it out, and an ES384 COSE_Sign1
(RFC 9052) in either signature byte order.

Usage: make_documents.py OUTDIR [--batch N [--fresh-chains]]
Writes into OUTDIR (the instant is 2030-01-01T00:00:00Z, the leaf is valid
one hour before to two hours after):
  root.pem, root.sha256          the pinned root and its SHA-256 (hex)
  other-root.pem                 an unrelated root
  rfc9052.cose, qingtian.cose    the same document, signature halves big-endian / byte-reversed
  rfc9052.b64                    rfc9052.cose as base64
  nonce.cose                     nonce = 00112233, user_data = "hello"
  rsa.cose, rsa.key              public_key = SPKI DER of an RSA-2048 key; its private key (PKCS#8 PEM)
  p384.cose, p384.key            the same with a P-384 key
  debug.cose                     the same key in a debug-mode enclave's document (PCR0-15 all zeros)
  p256.cose, p256.key            the same with a P-256 key, given as a raw point 04||X||Y
  dummy.cose                     public_key = b"dummy"
  wrong-leaf.cose                signed by the CA key instead of the leaf key
  pcr0.hex                       PCR0 of every document
  batch.b64                      with --batch N: N documents (distinct nonces, both orders), one per line
  fresh.b64                      with --fresh-chains as well: N documents, each under a CA and leaf of its
                                 own (the same root), so that no two share a link below the root
"""
import base64
import datetime
import hashlib
import os
import struct
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
NOW_MS = 1893456000000
PCR0 = bytes([0xA0]) * 48


# --- CBOR encoding (RFC 8949 §3, preferred serialisation) ---
def head(major, value, width=None):
    if width is None:
        width = 0 if value < 24 else 1 if value < 0x100 else 2 if value < 0x10000 else 4 if value < 0x100000000 else 8
    if width == 0:
        return bytes([major << 5 | value])
    info = {1: 24, 2: 25, 4: 26, 8: 27}[width]
    return bytes([major << 5 | info]) + value.to_bytes(width, "big")


def cbor_bytes(b):
    return head(2, len(b)) + b


def cbor_text(s):
    b = s.encode()
    return head(3, len(b)) + b


def payload(leaf, bundle, nonce=b"", user_data=b"", public_key=b"", timestamp=NOW_MS, debug=False):
    out = head(5, 9)
    out += cbor_text("module_id") + cbor_text("4662b7a3-7898-46c9-a6c5-20e9025e50bc.enc-0123456789abcdef")
    out += cbor_text("timestamp") + head(0, timestamp, width=8)  # docs/FORMATS.md §4: always 8 bytes
    out += cbor_text("digest") + cbor_text("SHA384")
    out += cbor_text("pcrs") + head(5, 16)
    for index in range(16):
        out += head(0, index) + cbor_bytes(bytes(48) if debug else PCR0 if index == 0 else bytes([index]) * 48)
    out += cbor_text("certificate") + cbor_bytes(leaf)
    out += cbor_text("cabundle") + head(4, len(bundle)) + b"".join(cbor_bytes(c) for c in bundle)
    out += cbor_text("user_data") + cbor_bytes(user_data)
    out += cbor_text("nonce") + cbor_bytes(nonce)
    out += cbor_text("public_key") + cbor_bytes(public_key)
    return out


PROTECTED = bytes.fromhex("a1013822")  # {1: -35}, ES384


def sign(key, payload_bytes, order="rfc9052"):
    to_be_signed = head(4, 4) + cbor_text("Signature1") + cbor_bytes(PROTECTED) + cbor_bytes(b"") + cbor_bytes(payload_bytes)
    r, s = decode_dss_signature(key.sign(to_be_signed, ec.ECDSA(hashes.SHA384())))
    r, s = r.to_bytes(48, "big"), s.to_bytes(48, "big")
    if order == "qingtian":
        r, s = r[::-1], s[::-1]
    return head(4, 4) + cbor_bytes(PROTECTED) + head(5, 0) + cbor_bytes(payload_bytes) + cbor_bytes(r + s)


# --- the throw-away PKI ---
def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "qtbox tests")])


def certificate(subject, subject_key, issuer, issuer_key, not_before, not_after, ca, path_length=None):
    builder = (x509.CertificateBuilder()
               .subject_name(name(subject)).issuer_name(name(issuer))
               .public_key(subject_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True))
    if ca:
        usage = dict(digital_signature=False, key_cert_sign=True, crl_sign=True)
    else:
        usage = dict(digital_signature=True, key_cert_sign=False, crl_sign=False)
    builder = builder.add_extension(x509.KeyUsage(content_commitment=not ca, key_encipherment=False, data_encipherment=False,
                                                  key_agreement=False, encipher_only=False, decipher_only=False, **usage),
                                    critical=True)
    return builder.sign(issuer_key, hashes.SHA384())


def make_chain(label, root=None, root_key=None):
    hour = datetime.timedelta(hours=1)
    year = datetime.timedelta(days=365)
    if root is None:
        root_key = ec.generate_private_key(ec.SECP384R1())
        root = certificate(label + "-root", root_key, label + "-root", root_key, NOW - 5 * year, NOW + 5 * year, True)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca = certificate(label + "-ca", ca_key, label + "-root", root_key, NOW - year / 2, NOW + year / 2, True, 0)
    leaf_key = ec.generate_private_key(ec.SECP384R1())
    leaf = certificate(label + "-leaf", leaf_key, label + "-ca", ca_key, NOW - hour, NOW + 2 * hour, False)
    der = lambda c: c.public_bytes(serialization.Encoding.DER)
    return dict(root=root, root_key=root_key, root_der=der(root), ca_key=ca_key, ca_der=der(ca), leaf_key=leaf_key,
                leaf_der=der(leaf))


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = argv[1]
    batch = int(argv[3]) if len(argv) > 3 and argv[2] == "--batch" else 0
    os.makedirs(out, exist_ok=True)

    def write(filename, data):
        with open(os.path.join(out, filename), "wb") as f:
            f.write(data)

    chain = make_chain("qtbox-test")
    other = make_chain("other")
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)
    write("root.pem", pem(chain["root"]))
    write("root.sha256", hashlib.sha256(chain["root_der"]).hexdigest().encode() + b"\n")
    write("other-root.pem", pem(other["root"]))
    write("pcr0.hex", PCR0.hex().encode() + b"\n")
    leaf, bundle, key = chain["leaf_der"], [chain["root_der"], chain["ca_der"]], chain["leaf_key"]

    plain = payload(leaf, bundle)
    write("rfc9052.cose", sign(key, plain))
    write("rfc9052.b64", base64.b64encode(sign(key, plain)) + b"\n")
    write("qingtian.cose", sign(key, plain, "qingtian"))
    write("nonce.cose", sign(key, payload(leaf, bundle, nonce=bytes.fromhex("00112233"), user_data=b"hello")))
    write("wrong-leaf.cose", sign(chain["ca_key"], plain))
    write("dummy.cose", sign(key, payload(leaf, bundle, public_key=b"dummy")))

    private_pem = lambda k: k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())
    spki = lambda k: k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write("rsa.key", private_pem(rsa_key))
    write("rsa.cose", sign(key, payload(leaf, bundle, public_key=spki(rsa_key))))
    p384_key = ec.generate_private_key(ec.SECP384R1())
    write("p384.key", private_pem(p384_key))
    write("p384.cose", sign(key, payload(leaf, bundle, public_key=spki(p384_key))))
    write("debug.cose", sign(key, payload(leaf, bundle, public_key=spki(p384_key), debug=True)))
    p256_key = ec.generate_private_key(ec.SECP256R1())
    point = p256_key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    write("p256.key", private_pem(p256_key))
    write("p256.cose", sign(key, payload(leaf, bundle, public_key=point)))

    if batch:
        lines = []
        for i in range(batch):
            document = payload(leaf, bundle, nonce=struct.pack(">Q", i), timestamp=NOW_MS - i)
            lines.append(base64.b64encode(sign(key, document, "rfc9052" if i % 2 == 0 else "qingtian")))
        write("batch.b64", b"\n".join(lines) + b"\n")
    if batch and "--fresh-chains" in argv[4:]:
        lines = []
        for i in range(batch):
            own = make_chain("qtbox-test", chain["root"], chain["root_key"])
            document = payload(own["leaf_der"], [own["root_der"], own["ca_der"]], nonce=struct.pack(">Q", i), timestamp=NOW_MS - i)
            lines.append(base64.b64encode(sign(own["leaf_key"], document, "rfc9052" if i % 2 == 0 else "qingtian")))
        write("fresh.b64", b"\n".join(lines) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
