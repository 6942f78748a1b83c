#!/usr/bin/env python3
"""Acceptance 1 (issue 6): a client on <run>/vsock/3_8000 reaches a loopback
TCP echo server through `qt-proxy -l 8000 -a 127.0.0.1 -p PORT`; 1000
concurrent connections with 256 KiB each all come back byte-identical
(sha256). Also: the listener's modes, the proxy's seccomp state, the log line
of each connection, and a clean exit on SIGTERM."""
import asyncio
import hashlib
import os
import random
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxylib import Work, check, fail, raise_fd_limit, skip, wait_path  # noqa: E402

CONNECTIONS = 1000
SIZE = 256 * 1024
CHUNK = 64 * 1024


async def one(path, index, ready, go):
    payload = random.Random(index).randbytes(SIZE)
    reader, writer = await asyncio.open_unix_connection(path, limit=1 << 20)
    ready.release()
    await go.wait()

    async def send():
        for offset in range(0, SIZE, CHUNK):
            writer.write(payload[offset:offset + CHUNK])
            await writer.drain()
        writer.write_eof()

    sender = asyncio.create_task(send())
    digest = hashlib.sha256()
    received = 0
    while True:
        data = await reader.read(1 << 18)
        if not data:
            break
        digest.update(data)
        received += len(data)
    await sender
    writer.close()
    return received, digest.hexdigest() == hashlib.sha256(payload).hexdigest()


async def run_all(path):
    ready = asyncio.Semaphore(0)
    go = asyncio.Event()
    tasks = [asyncio.create_task(one(path, i, ready, go)) for i in range(CONNECTIONS)]
    # Every connection is open before any byte moves: they really are concurrent.
    for _ in range(CONNECTIONS):
        await asyncio.wait_for(ready.acquire(), 60)
    go.set()
    return await asyncio.wait_for(asyncio.gather(*tasks), 150)


def main():
    # The proxy needs up to six descriptors per connection (qt-proxy(1)), the
    # client and the echo server one each.
    if raise_fd_limit() < 8 * CONNECTIONS:
        skip(f"RLIMIT_NOFILE hard limit below {8 * CONNECTIONS}: cannot hold {CONNECTIONS} proxied connections")
    with Work() as work:
        _, echo_port = work.start_helper("echo")
        # Three workers on any machine: the connections are spread over
        # several event loops whatever the CPU count.
        proxy = work.start_proxy(["-l", "8000", "-a", "127.0.0.1", "-p", echo_port, "--af-vsock", "off", "--workers", "3"])
        check(len(proxy.lines(", 3 workers, seccomp on")) == 1, f"expected 3 workers in the ready line:\n{proxy.text()}")
        path = os.path.join(work.run, "vsock", "3_8000")
        wait_path(path)
        mode = os.lstat(path).st_mode
        check(stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660, f"{path} mode {oct(mode)}, expected a 0660 socket")
        directory = os.stat(os.path.dirname(path)).st_mode
        check(stat.S_IMODE(directory) == 0o750, f"vsock dir mode {oct(directory)}, expected 0750")
        check(proxy.status("Seccomp") == "2", f"Seccomp: {proxy.status('Seccomp')}, expected 2 (filter)")
        check(proxy.status("NoNewPrivs") == "1", "NoNewPrivs is not set")
        # Every thread (the control loop and the three workers) is filtered.
        tasks = os.listdir(f"/proc/{proxy.pid}/task")
        check(len(tasks) == 4, f"{len(tasks)} threads, expected 4")
        for task in tasks:
            with open(f"/proc/{proxy.pid}/task/{task}/status", encoding="utf-8") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            check(fields["Seccomp"].strip() == "2" and fields["NoNewPrivs"].strip() == "1",
                  f"thread {task}: Seccomp {fields['Seccomp'].strip()}, NoNewPrivs {fields['NoNewPrivs'].strip()}")

        results = asyncio.run(run_all(path))
        sizes = {size for size, _ in results}
        check(sizes == {SIZE}, f"received sizes {sorted(sizes)[:5]}, expected {SIZE} each")
        bad = [i for i, (_, same) in enumerate(results) if not same]
        check(not bad, f"{len(bad)} connections came back different, e.g. #{bad[:5]}")

        lines = proxy.wait_log(" close=done", CONNECTIONS)
        check(len(proxy.lines(" conn=")) == CONNECTIONS, "not exactly one log line per connection")
        sample = lines[0]
        for field in ("rule=out:8000", "peer=unix:pid=", f"target=127.0.0.1:{echo_port}", f"up={SIZE}", f"down={SIZE}", " ms="):
            check(field in sample, f"log line lacks '{field}': {sample}")
        check(proxy.status("Seccomp") == "2", "seccomp went away")

        status = proxy.stop()
        check(status == 0, f"qt-proxy exited {status} on SIGTERM, expected 0")
        check(not os.path.exists(path), f"{path} was left behind after exit")
        check("signal TERM: shutting down" in proxy.text(), "no shutdown line")
    print(f"ok: {CONNECTIONS} x {SIZE} bytes byte-identical")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as error:
        fail(str(error))
