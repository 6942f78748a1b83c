#!/usr/bin/python3
"""Opens an attest-verify --seal envelope with python3-cryptography, following
only the format documented in man/attest-verify.1 (ENVELOPE), so the golden
test checks qtbox against an independent reading of its own documentation.

Usage: open_envelope.py ENVELOPE PRIVATE_KEY_PEM   (prints the plaintext to stdout)
"""
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def decode_envelope(data):
    """The envelope is a definite CBOR map of four text keys to a text string
    (alg) and byte strings (ek, iv, ct); nothing else is accepted."""
    position = 0

    def argument(info):
        nonlocal position
        if info < 24:
            return info
        size = {24: 1, 25: 2, 26: 4, 27: 8}[info]
        value = int.from_bytes(data[position:position + size], "big")
        position += size
        return value

    def item():
        nonlocal position
        initial = data[position]
        position += 1
        major, length = initial >> 5, argument(initial & 0x1F)
        if major in (2, 3):
            value = data[position:position + length]
            position += length
            return value.decode() if major == 3 else bytes(value)
        raise ValueError(f"unexpected major type {major}")

    initial = data[position]
    position += 1
    if initial >> 5 != 5:
        raise ValueError("not a map")
    result = {}
    for _ in range(argument(initial & 0x1F)):
        key = item()
        result[key] = item()
    if position != len(data):
        raise ValueError("trailing bytes")
    return result


def main(argv):
    envelope = decode_envelope(open(argv[1], "rb").read())
    key = serialization.load_pem_private_key(open(argv[2], "rb").read(), password=None)
    alg = envelope["alg"]
    if alg == "RSA-OAEP-256+A256GCM":
        content_key = key.decrypt(envelope["ek"], padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    elif alg in ("ECDH-P256+HKDF-SHA256+A256GCM", "ECDH-P384+HKDF-SHA256+A256GCM"):
        curve = ec.SECP256R1() if "P256" in alg else ec.SECP384R1()
        ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(curve, envelope["ek"])
        shared = key.exchange(ec.ECDH(), ephemeral)
        recipient = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        info = b"qtbox-seal-v1\x00" + envelope["ek"] + recipient
        content_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)
    else:
        raise ValueError(f"unknown alg {alg}")
    plaintext = AESGCM(content_key).decrypt(envelope["iv"], envelope["ct"], alg.encode())
    sys.stdout.buffer.write(plaintext)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
