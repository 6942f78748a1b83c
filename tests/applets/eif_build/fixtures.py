#!/usr/bin/env python3
"""Fixtures for the eif-build golden tests, so that they need neither the
real guest kernel nor Docker:

  fixtures.py blobs DIR RELEASE      a blobs directory: bzImage (a stub with a
                                     boot-protocol header naming RELEASE),
                                     cmdline, kernel.release, and modules/ with
                                     the six guest modules as tiny ELF files
                                     whose .modinfo carries vermagic=RELEASE
  fixtures.py cert DIR FROM_DAYS TO_DAYS [CURVE]
                                     DIR/key.pem and DIR/cert.pem, self-signed,
                                     valid from now+FROM_DAYS to now+TO_DAYS
  fixtures.py tar OUT NAME:TYPE[:ARG]...
                                     a layer tar: TYPE f (file, ARG = contents),
                                     d (directory), l (symlink, ARG = target)
  fixtures.py header EIF             checks the EIF header with struct (Nitro
                                     v4 layout) and prints one line per section
"""
import datetime
import io
import os
import struct
import sys
import tarfile
import zlib

MODULES = [
    ("virtio_ring", "kernel/drivers/virtio"),
    ("virtio", "kernel/drivers/virtio"),
    ("virtio_mmio", "kernel/drivers/virtio"),
    ("vsock", "kernel/net/vmw_vsock"),
    ("vmw_vsock_virtio_transport_common", "kernel/net/vmw_vsock"),
    ("vmw_vsock_virtio_transport", "kernel/net/vmw_vsock"),
]
CMDLINE = "console=ttyS0 reboot=k panic=1 pci=off quiet"


def elf_module(name, release):
    names = b"\0.shstrtab\0.modinfo\0"
    modinfo = b"license=GPL\0vermagic=" + release.encode() + b" SMP mod_unload\0name=" + name.encode() + b"\0"
    header = bytearray(64)
    header[0:4] = b"\x7fELF"
    header[4], header[5], header[6] = 2, 1, 1
    body = bytes(header) + names + modinfo
    body += b"\0" * (-len(body) % 8)
    shoff = len(body)
    header[0x28:0x30] = struct.pack("<Q", shoff)
    header[0x3A:0x40] = struct.pack("<HHH", 64, 3, 1)

    def section(name_offset, offset, size):
        return struct.pack("<IIQQQQIIQQ", name_offset, 3, 0, 0, offset, size, 0, 0, 1, 0)

    sections = bytes(64) + section(1, 64, len(names)) + section(11, 64 + len(names), len(modinfo))
    return bytes(header) + body[64:] + sections


def blobs(directory, release):
    os.makedirs(directory, exist_ok=True)
    kernel = bytearray(8192)
    kernel[0x202:0x206] = b"HdrS"
    kernel[0x206:0x208] = struct.pack("<H", 0x20F)
    kernel[0x20E:0x210] = struct.pack("<H", 0x400 - 0x200)
    version = (release + " (qtbox-test) #1 SMP").encode()
    kernel[0x400:0x400 + len(version)] = version
    kernel[0x1000:] = bytes((i * 7) & 0xFF for i in range(4096))
    with open(os.path.join(directory, "bzImage"), "wb") as f:
        f.write(kernel)
    with open(os.path.join(directory, "cmdline"), "w") as f:
        f.write(CMDLINE + "\n")
    with open(os.path.join(directory, "kernel.release"), "w") as f:
        f.write(release + "\n")
    for name, path in MODULES:
        os.makedirs(os.path.join(directory, "modules", path), exist_ok=True)
        with open(os.path.join(directory, "modules", path, name + ".ko"), "wb") as f:
            f.write(elf_module(name, release))


def cert(directory, from_days, to_days, curve="P-384"):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP384R1() if curve == "P-384" else ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "eif-build test signer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=float(from_days)))
        .not_valid_after(now + datetime.timedelta(days=float(to_days)))
        .sign(key, hashes.SHA384())
    )
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "key.pem"), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with open(os.path.join(directory, "cert.pem"), "wb") as f:
        f.write(certificate.public_bytes(serialization.Encoding.PEM))


def layer_tar(output, specs):
    with tarfile.open(output, "w", format=tarfile.PAX_FORMAT) as tar:
        for spec in specs:
            parts = spec.split(":", 2)
            info = tarfile.TarInfo(parts[0])
            info.mtime = 0
            if parts[1] == "f":
                data = (parts[2] if len(parts) > 2 else "").encode()
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
            elif parts[1] == "d":
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            elif parts[1] == "l":
                info.type = tarfile.SYMTYPE
                info.linkname = parts[2]
                tar.addfile(info)


def header(path):
    data = open(path, "rb").read()
    fields = struct.unpack(">4sHHQQHH32Q32QII", data[:548])
    magic, version, flags, memory, cpus, reserved, count = fields[:7]
    offsets, sizes = fields[7:39], fields[39:71]
    unused, crc = fields[71], fields[72]
    assert struct.calcsize(">4sHHQQHH32Q32QII") == 548
    assert magic == b".eif", magic
    assert version == 4, version
    assert flags == 0, flags
    assert memory == 1 << 30 and cpus == 2 and reserved == 0 and unused == 0
    expected_crc = zlib.crc32(data[548:], zlib.crc32(data[:544]))
    assert crc == expected_crc, f"CRC {crc:#x} != {expected_crc:#x}"
    types = []
    position = 548
    for index in range(count):
        assert offsets[index] == position, (index, offsets[index], position)
        kind, section_flags, size = struct.unpack(">HHQ", data[position:position + 12])
        assert section_flags == 0 and size == sizes[index]
        types.append(kind)
        print(f"section {index} type {kind} offset {position} size {size}")
        position += 12 + size
    assert position == len(data), (position, len(data))
    assert all(offset == 0 for offset in offsets[count:]) and all(size == 0 for size in sizes[count:])
    # kernel (1), cmdline (2), metadata (5), ramdisk (3) x N, signature (4) if signed
    assert types[:3] == [1, 2, 5], types
    rest = types[3:]
    if rest and rest[-1] == 4:
        rest = rest[:-1]
    assert rest and all(kind == 3 for kind in rest), types
    print(f"header ok: {count} sections, crc {crc:#010x}")


def main(argv):
    command = argv[1]
    if command == "blobs":
        blobs(argv[2], argv[3])
    elif command == "cert":
        cert(argv[2], argv[3], argv[4], *(argv[5:6]))
    elif command == "tar":
        layer_tar(argv[2], argv[3:])
    elif command == "header":
        header(argv[2])
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv)
