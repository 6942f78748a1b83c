#!/usr/bin/env python3
"""Acceptance 2 (issue 6): `listen = "127.0.0.1:5050"` reaches a Unix-socket
fake of the VMM that speaks the CONNECT protocol (docs/FORMATS.md §6), by enclave_id and
by enclave_cid; a stopped enclave closes only its own clients."""
import concurrent.futures
import os
import random
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxylib import Work, check, free_tcp_port, recv_all, roundtrip  # noqa: E402


def port_5050_or_free():
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 5050))
            return 5050
        except OSError:
            return free_tcp_port()


def tcp(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    return s


def main():
    with Work() as work:
        by_id = port_5050_or_free()
        by_cid = free_tcp_port()
        absent = free_tcp_port()
        work.start_helper("vmm", os.path.join(work.run, "enclaves", "0", "vsock.sock"))
        work.start_helper("vmm", os.path.join(work.run, "enclaves", "cid-4", "vsock.sock"))
        config = work.file("proxy.toml", f"""
[[inbound]]
listen = "127.0.0.1:{by_id}"
enclave_id = 0
vsock_port = 5050

[[inbound]]
listen = "127.0.0.1:{by_cid}"
enclave_cid = 4
vsock_port = 7000

[[inbound]]
listen = "127.0.0.1:{absent}"
enclave_id = 9
vsock_port = 5050
""")
        proxy = work.start_proxy(["--config", config, "--af-vsock", "off"])

        with tcp(by_id) as s:
            answer = roundtrip(s, b"hello enclave")
        check(answer == b"port=5050;hello enclave", f"by enclave_id: got {answer!r}")
        with tcp(by_cid) as s:
            answer = roundtrip(s, b"by cid")
        check(answer == b"port=7000;by cid", f"by enclave_cid: got {answer!r}")

        # 50 concurrent clients, 512 KiB each, byte-identical.
        def one(index):
            payload = random.Random(index).randbytes(512 * 1024)
            with tcp(by_id) as s:
                echoed = roundtrip(s, payload)
            return echoed == b"port=5050;" + payload

        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            results = list(pool.map(one, range(50)))
        check(all(results), f"{results.count(False)} of 50 inbound connections came back different")

        # Enclave 9 is not running: its client is closed, others carry on.
        # The proxy answers with a reset, which can land before Python's
        # non-blocking connect() has looked at the socket: then connect()
        # itself reports it.
        try:
            with tcp(absent) as s:
                s.settimeout(5)
                data = recv_all(s)
        except ConnectionResetError:
            data = b""
        check(data == b"", "a client of a stopped enclave got data")
        lines = proxy.wait_log("close=connect_failed")
        expected = os.path.join(work.run, "enclaves", "9", "vsock.sock")
        check(f"error=\"connect unix:{expected}: No such file or directory\"" in lines[0], f"unexpected line: {lines[0]}")
        with tcp(by_id) as s:
            check(roundtrip(s, b"again") == b"port=5050;again", "the proxy stopped serving after a failure")
        line = proxy.lines(f"rule=in:127.0.0.1:{by_id}")[0]
        check(f"target=enclave:0:5050 addr=unix:{os.path.join(work.run, 'enclaves', '0', 'vsock.sock')}" in line, f"log line: {line}")
        check(proxy.stop() == 0, "qt-proxy did not exit 0 on SIGTERM")
    print(f"ok: inbound through CONNECT (listen port {by_id})")


if __name__ == "__main__":
    main()
