#!/usr/bin/env python3
"""Acceptance 4 (issue 6): a TCP client -> enclave-mode qt-proxy -> parent-mode
qt-proxy -> echo server, all on one host through the hybrid socket path
(--vsock-dir stands in for the VMM's mapping of CID 3 to <run>/vsock/3_<port>).
One configuration file serves both ends, as with qproxy."""
import asyncio
import hashlib
import os
import random
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxylib import Work, check, free_tcp_port, raise_fd_limit, roundtrip, skip, wait_path  # noqa: E402

CONNECTIONS = 200
SIZE = 256 * 1024


async def one(port, index):
    payload = random.Random(index).randbytes(SIZE)
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)

    async def send():
        writer.write(payload)
        await writer.drain()
        writer.write_eof()

    sender = asyncio.create_task(send())
    digest = hashlib.sha256()
    while True:
        data = await reader.read(1 << 18)
        if not data:
            break
        digest.update(data)
    await sender
    writer.close()
    return digest.digest() == hashlib.sha256(payload).digest()


async def run_all(port):
    return await asyncio.wait_for(asyncio.gather(*(one(port, i) for i in range(CONNECTIONS))), 150)


def main():
    if raise_fd_limit() < 8 * CONNECTIONS:
        skip(f"RLIMIT_NOFILE hard limit below {8 * CONNECTIONS}: cannot hold {CONNECTIONS} proxied connections")
    with Work() as work:
        _, echo_port = work.start_helper("echo")
        app_port = free_tcp_port()
        config = work.file("qt-proxy.toml", f"""
# The enclave's app talks HTTP-style to 127.0.0.1:{app_port}; the parent
# forwards vsock port 8000 to the echo server.
[[outbound]]
vsock_port = 8000
host = "127.0.0.1"
port = {echo_port}
enclave_port = {app_port}
""")
        vsock_dir = os.path.join(work.run, "vsock")
        parent = work.start_proxy(["--config", config, "--af-vsock", "off"], name="parent")
        wait_path(os.path.join(vsock_dir, "3_8000"))
        enclave = work.start_proxy(["--enclave", "--config", config, "--vsock-dir", vsock_dir], name="enclave")
        check(enclave.status("Seccomp") == "2", "enclave-mode proxy is not under seccomp")

        with socket.create_connection(("127.0.0.1", app_port), timeout=10) as s:
            check(roundtrip(s, b"GET / HTTP/1.0\r\n\r\n") == b"GET / HTTP/1.0\r\n\r\n", "single request did not come back")
        results = asyncio.run(run_all(app_port))
        check(all(results), f"{results.count(False)} of {CONNECTIONS} chained connections came back different")

        tunnel = enclave.wait_log(" close=done", CONNECTIONS + 1)
        outbound = parent.wait_log(" close=done", CONNECTIONS + 1)
        check(f"rule=tunnel:{app_port}" in tunnel[-1] and f"target=unix:{vsock_dir}/3_8000" in tunnel[-1], f"enclave line: {tunnel[-1]}")
        check("rule=out:8000" in outbound[-1] and f"up={SIZE} down={SIZE}" in outbound[-1], f"parent line: {outbound[-1]}")
        check(enclave.stop() == 0 and parent.stop() == 0, "a proxy did not exit 0 on SIGTERM")
    print(f"ok: {CONNECTIONS} x {SIZE} bytes through enclave mode and parent mode")


if __name__ == "__main__":
    main()
