#!/usr/bin/env python3
"""Parent mode on a host with a vsock transport listens on AF_VSOCK as well
as on the hybrid socket (issue 6: "and AF_VSOCK as well when the host has a
vsock transport"). Skipped where the kernel has no vsock transport. The data
path is checked when the local loopback transport answers (CID 1)."""
import fcntl
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxylib import Work, check, roundtrip, skip, unix_client, wait_path  # noqa: E402

VMADDR_CID_ANY = 0xFFFFFFFF
VMADDR_CID_LOCAL = 1


def local_cid():
    if not hasattr(socket, "AF_VSOCK"):
        return None
    try:
        with open("/dev/vsock", "rb") as f:
            cid = struct.unpack("I", fcntl.ioctl(f, socket.IOCTL_VM_SOCKETS_GET_LOCAL_CID, b"\0" * 4))[0]
    except OSError:
        return None
    return None if cid == VMADDR_CID_ANY else cid


def main():
    cid = local_cid()
    if cid is None:
        skip("no vsock transport on this host (/dev/vsock absent or no local CID)")
    # A port unlikely to be taken, different per run.
    port = 0x51000000 + (os.getpid() & 0xFFFF)
    with Work() as work:
        _, echo_port = work.start_helper("echo")
        proxy = work.start_proxy(["-l", str(port), "-a", "127.0.0.1", "-p", echo_port, "--af-vsock", "on"])
        wait_path(os.path.join(work.run, "vsock", f"3_{port}"))
        check("ready: parent mode, 2 listeners" in proxy.text(), f"expected a hybrid and an AF_VSOCK listener:\n{proxy.text()}")
        with socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((VMADDR_CID_ANY, port))
                taken = False
            except OSError:
                taken = True
        check(taken, f"AF_VSOCK port {port} is not bound by qt-proxy")
        with unix_client(os.path.join(work.run, "vsock", f"3_{port}")) as s:
            check(roundtrip(s, b"hybrid") == b"hybrid", "the hybrid listener does not work alongside AF_VSOCK")

        client = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        client.settimeout(2)
        try:
            client.connect((VMADDR_CID_LOCAL, port))
        except OSError as error:
            print(f"note: AF_VSOCK data path not checked: no loopback transport ({error})")
        else:
            client.settimeout(10)
            check(roundtrip(client, b"over vsock") == b"over vsock", "AF_VSOCK connection did not reach the target")
            check("peer=vsock:" in proxy.wait_log("close=done", 2)[-1], "AF_VSOCK peer not logged")
        finally:
            client.close()
        check(proxy.stop() == 0, "qt-proxy did not exit 0")
    print(f"ok: AF_VSOCK listener on port {port} (local CID {cid})")


if __name__ == "__main__":
    main()
