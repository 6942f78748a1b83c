#!/usr/bin/env python3
"""Prints the payload of a COSE_Sign1 attestation document as JSON lines, with
just enough CBOR (RFC 8949) to check the docs/FORMATS.md §4 layout independently of
qtbox's decoder: the key order, the timestamp's encoding width, the PCR
indices, the protected header bytes and whether the envelope is tagged."""
import json
import sys


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def head(self):
        initial = self.data[self.pos]
        self.pos += 1
        major, info = initial >> 5, initial & 31
        if info < 24:
            return major, info, info
        size = {24: 1, 25: 2, 26: 4, 27: 8}[info]
        value = int.from_bytes(self.data[self.pos:self.pos + size], "big")
        self.pos += size
        return major, info, value

    def item(self):
        major, info, value = self.head()
        if major in (0,):
            return value
        if major == 1:
            return -1 - value
        if major in (2, 3):
            raw = self.data[self.pos:self.pos + value]
            self.pos += value
            return raw if major == 2 else raw.decode()
        if major == 4:
            return [self.item() for _ in range(value)]
        if major == 5:
            return [(self.item(), self.item()) for _ in range(value)]
        if major == 6:
            return ("tag", value, self.item())
        if major == 7:
            return {20: False, 21: True, 22: None}[value]
        raise ValueError("unsupported")


def main():
    data = open(sys.argv[1], "rb").read()
    envelope = Reader(data)
    tagged = data[0] >> 5 == 6
    top = envelope.item()
    if tagged:
        top = top[2]
    protected, unprotected, payload, signature = top
    reader = Reader(payload)
    entries = reader.item()
    # Find the timestamp's head byte by re-reading the payload.
    widths = {}
    scan = Reader(payload)
    scan.head()
    for _ in range(len(entries)):
        key = scan.item()
        start = scan.pos
        scan.item()
        widths[key] = payload[start]
    result = {
        "tagged": tagged,
        "protected": protected.hex(),
        "unprotected": len(unprotected),
        "signature_size": len(signature),
        "keys": [key for key, _ in entries],
        "timestamp_head": "%02x" % widths["timestamp"],
        "pcrs": [index for index, _ in dict(entries)["pcrs"]],
        "pcr_sizes": sorted({len(value) for _, value in dict(entries)["pcrs"]}),
        "nonce": dict(entries)["nonce"].hex(),
        "user_data": dict(entries)["user_data"].hex(),
        "public_key": dict(entries)["public_key"].hex(),
        "certificate_sha256": __import__("hashlib").sha256(dict(entries)["certificate"]).hexdigest(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
