#!/usr/bin/python3
"""Reference attestation-document verifier for bench/attest_verify: the same
checks as `attest-verify` (docs/FORMATS.md §9) written with Debian's python3-cryptography
(OpenSSL): CBOR decoding of the COSE_Sign1 and its payload, the pinned root's
SHA-256, the chain leaf -> cabundle[n-1] -> ... -> cabundle[0] (signatures,
issuer names, CA basicConstraints, validity of every certificate at the given
instant), the ES384 COSE signature in either byte order, and the PCRs.

Usage as a program: attest_verify_ref.py BATCH_FILE ROOT_SHA256 AT_UNIX_SECONDS [N=HEX...]
prints the number of documents verified and fails on the first invalid one.
"""
import base64
import datetime
import hashlib
import sys

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


class Invalid(Exception):
    pass


def cbor_decode(data):
    """Minimal strict RFC 8949 decoder: the subset attestation documents use
    (integers, strings, arrays, maps, tags, simple values), definite and
    indefinite lengths; trailing bytes are refused."""
    position = 0

    def take(size):
        nonlocal position
        if position + size > len(data):
            raise Invalid("truncated CBOR")
        chunk = data[position:position + size]
        position += size
        return chunk

    def item():
        initial = take(1)[0]
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            argument = info
        elif info < 28:
            argument = int.from_bytes(take(1 << (info - 24)), "big")
        elif info == 31 and major in (2, 3, 4, 5):
            argument = None
        else:
            raise Invalid("malformed CBOR head")
        if major == 0:
            return argument
        if major == 1:
            return -1 - argument
        if major in (2, 3):
            if argument is None:
                parts = []
                while data[position] != 0xFF:
                    parts.append(item())
                take(1)
                value = b"".join(parts) if major == 2 else "".join(parts)
                return value
            raw = take(argument)
            return bytes(raw) if major == 2 else raw.decode("utf-8")
        if major == 4:
            if argument is None:
                items = []
                while data[position] != 0xFF:
                    items.append(item())
                take(1)
                return items
            return [item() for _ in range(argument)]
        if major == 5:
            result = {}
            count = 0
            while (argument is None and data[position] != 0xFF) or (argument is not None and count < argument):
                key = item()
                if key in result:
                    raise Invalid("duplicate map key")
                result[key] = item()
                count += 1
            if argument is None:
                take(1)
            return result
        if major == 6:
            return ("tag", argument, item())
        return {20: False, 21: True, 22: None}.get(argument, ("simple", argument))

    value = item()
    if position != len(data):
        raise Invalid("trailing bytes")
    return value


def cbor_head(major, value):
    if value < 24:
        return bytes([major << 5 | value])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * size):
            return bytes([major << 5 | info]) + value.to_bytes(size, "big")
    raise ValueError(value)


def verify_document(cose, root_sha256, at, pcrs):
    message = cbor_decode(cose)
    if isinstance(message, tuple) and message[0] == "tag" and message[1] == 18:
        message = message[2]
    if not isinstance(message, list) or len(message) != 4:
        raise Invalid("not a COSE_Sign1")
    protected, _unprotected, payload_bytes, signature = message
    if cbor_decode(protected).get(1) != -35 or len(signature) != 96:
        raise Invalid("not ES384")
    payload = cbor_decode(payload_bytes)
    for key in ("module_id", "timestamp", "digest", "pcrs", "certificate", "cabundle"):
        if key not in payload:
            raise Invalid(f"missing {key}")
    if payload["digest"] != "SHA384":
        raise Invalid("digest")

    bundle = payload["cabundle"]
    if hashlib.sha256(bundle[0]).digest() != root_sha256:
        raise Invalid("not the pinned root")
    chain = [x509.load_der_x509_certificate(payload["certificate"])]
    chain += [x509.load_der_x509_certificate(der) for der in reversed(bundle)]
    for index, certificate in enumerate(chain):
        if not certificate.not_valid_before <= at <= certificate.not_valid_after:
            raise Invalid(f"certificate {index} not valid at {at}")
        if index == len(chain) - 1:
            break  # the pinned root is a trust anchor: its self-signature is not checked
        issuer = chain[index + 1]
        if certificate.issuer != issuer.subject:
            raise Invalid("issuer name")
        if not issuer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise Invalid("issuer is not a CA")
        issuer.public_key().verify(certificate.signature, certificate.tbs_certificate_bytes,
                                   ec.ECDSA(certificate.signature_hash_algorithm))

    to_be_signed = (cbor_head(4, 4) + cbor_head(3, 10) + b"Signature1" + cbor_head(2, len(protected)) + protected
                    + cbor_head(2, 0) + cbor_head(2, len(payload_bytes)) + payload_bytes)
    key = chain[0].public_key()
    for r, s in ((signature[:48], signature[48:]), (signature[:48][::-1], signature[48:][::-1])):
        try:
            key.verify(encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big")), to_be_signed,
                       ec.ECDSA(hashes.SHA384()))
            break
        except InvalidSignature:
            continue
    else:
        raise Invalid("signature")

    for index, value in pcrs.items():
        if payload["pcrs"].get(index) != value:
            raise Invalid(f"PCR{index}")
    return payload


def main(argv):
    documents = [base64.b64decode(line) for line in open(argv[1], "rb") if line.strip()]
    root = bytes.fromhex(argv[2])
    at = datetime.datetime.utcfromtimestamp(int(argv[3]))
    pcrs = {int(arg.split("=")[0]): bytes.fromhex(arg.split("=")[1]) for arg in argv[4:]}
    for document in documents:
        verify_document(document, root, at, pcrs)
    print(len(documents))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
