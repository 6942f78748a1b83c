#!/usr/bin/env python3
"""Fault test (issue 15): qt-proxy killed with SIGKILL under load. Clients in
the middle of transfers see their connection end (reset or end of file),
and every byte they did receive is exactly what they sent, in order: never
corrupted, duplicated or another client's data. A new qt-proxy (what the
systemd unit's Restart=on-failure does; systemd itself is not here) takes
the stale socket over and serves at once. Bounds asserted: the prefix
property for every client, every client ended, and the restarted proxy's
round trip."""
import hashlib
import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxylib import Work, check, roundtrip, unix_client, wait_path  # noqa: E402

CLIENTS = 16
CHUNK = 32 * 1024
TOTAL = 64 << 20  # more than any client gets through before the kill


def pattern(client, offset, size):
    """Bytes unique to the client and the position, so a misplaced byte shows."""
    out = bytearray()
    block = offset // 32
    while len(out) < size + (offset % 32):
        out += hashlib.sha256(f"{client}:{block}".encode()).digest()
        block += 1
    start = offset % 32
    return bytes(out[start:start + size])


def run_client(path, index, results, started):
    sent = 0
    received = bytearray()
    error = None
    try:
        s = unix_client(path, timeout=20)
        started.release()

        def reader():
            while True:
                try:
                    data = s.recv(1 << 16)
                except OSError:
                    return
                if not data:
                    return
                received.extend(data)

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            while sent < TOTAL:
                s.sendall(pattern(index, sent, CHUNK))
                sent += CHUNK
        except OSError as e:
            error = e
        thread.join(30)
        s.close()
    except OSError as e:
        started.release()
        error = e
    results[index] = (sent, bytes(received), error)


def main():
    with Work() as work:
        _, echo_port = work.start_helper("echo")
        config = work.file("proxy.toml", f'[[outbound]]\nvsock_port = 8000\nhost = "127.0.0.1"\nport = {echo_port}\n')
        path = os.path.join(work.run, "vsock", "3_8000")
        proxy = work.start_proxy(["--config", config, "--af-vsock", "off"])
        wait_path(path)

        results = {}
        started = threading.Semaphore(0)
        threads = [threading.Thread(target=run_client, args=(path, i, results, started)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for _ in range(CLIENTS):
            started.acquire()
        # Under load: data flows through every connection for a while.
        deadline_bytes = 256 * 1024
        time.sleep(0.5)
        proxy.process.send_signal(signal.SIGKILL)
        proxy.process.wait(10)
        for thread in threads:
            thread.join(60)
            check(not thread.is_alive(), "a client never saw its connection end after the kill")

        moved = 0
        for index in range(CLIENTS):
            sent, received, _ = results[index]
            check(sent < TOTAL, f"client {index} sent everything: the kill came too late to test anything")
            check(len(received) <= sent, f"client {index} received {len(received)} bytes, more than the {sent} it sent")
            check(received == pattern(index, 0, len(received)),
                  f"client {index}: the {len(received)} bytes received are not a prefix of what it sent")
            moved += len(received)
        check(moved >= deadline_bytes, f"only {moved} bytes moved before the kill: not under load")

        # The restart: the socket file left by the killed proxy is stale.
        check(os.path.exists(path), "the killed proxy's socket file is gone")
        restarted = work.start_proxy(["--config", config, "--af-vsock", "off"], name="restarted")
        with unix_client(path) as s:
            check(roundtrip(s, b"after the restart") == b"after the restart", "the restarted proxy does not forward")
        check(restarted.stop() == 0, "the restarted proxy did not exit 0")
    print(f"ok: {CLIENTS} clients under load saw only their own bytes, in order, when qt-proxy was killed; {moved} bytes moved")


if __name__ == "__main__":
    main()
