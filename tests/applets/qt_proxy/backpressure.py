#!/usr/bin/env python3
"""Back-pressure (issue 6 "Event loop"): with a target that does not read,
the proxy stops reading its client, so a fast sender blocks after a bounded
amount instead of the proxy buffering without end; once the target reads,
every byte arrives in order. Also half-close: the client's EOF reaches the
target while the target can still answer."""
import hashlib
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxylib import Work, check, recv_all, unix_client, wait_path  # noqa: E402

# Loopback TCP buffers autotune up to several MiB each way; a proxy that
# buffered in user space would let the sender go far past this.
BOUND = 48 * 1024 * 1024
CLIENTS = 8


def main():
    with Work() as work:
        target = socket.socket()
        target.bind(("127.0.0.1", 0))
        target.listen(64)
        port = target.getsockname()[1]
        proxy = work.start_proxy(["-l", "8000", "-a", "127.0.0.1", "-p", str(port), "--af-vsock", "off"])
        path = os.path.join(work.run, "vsock", "3_8000")
        wait_path(path)
        rss_before = proxy.rss_kib()

        clients = []
        accepted = []
        for _ in range(CLIENTS):
            client = unix_client(path)
            client.setblocking(False)
            clients.append(client)
            accepted.append(target.accept()[0])

        chunk = bytes(range(256)) * 256
        sent = [0] * CLIENTS
        digests = [hashlib.sha256() for _ in range(CLIENTS)]
        stalled_since = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            progress = False
            for i, client in enumerate(clients):
                try:
                    n = client.send(chunk)
                except BlockingIOError:
                    continue
                digests[i].update(chunk[:n])
                sent[i] += n
                progress = True
                check(sent[i] <= BOUND, f"client {i} sent {sent[i]} bytes into a target that does not read")
            if progress:
                stalled_since = None
            elif stalled_since is None:
                stalled_since = time.monotonic()
            elif time.monotonic() - stalled_since > 1.0:
                break
        check(stalled_since is not None, "senders never blocked")
        rss_after = proxy.rss_kib()
        print(f"senders blocked after {min(sent)}..{max(sent)} bytes each; VmRSS {rss_before} -> {rss_after} KiB")
        check(rss_after < rss_before + 8 * 1024, f"proxy RSS grew from {rss_before} to {rss_after} KiB under back-pressure")

        # Half-close: the clients finish; the target reads everything, sees
        # EOF, and its answer still reaches each client.
        for client in clients:
            client.setblocking(True)
            client.shutdown(socket.SHUT_WR)
        for i, connection in enumerate(accepted):
            connection.settimeout(20)
            data = recv_all(connection)
            check(len(data) == sent[i] and hashlib.sha256(data).digest() == digests[i].digest(),
                  f"target {i} got {len(data)} bytes, client sent {sent[i]}")
            connection.sendall(b"answer after EOF")
            connection.shutdown(socket.SHUT_WR)
        for client in clients:
            client.settimeout(20)
            check(recv_all(client) == b"answer after EOF", "the answer after a half-close was lost")
            client.close()
        for connection in accepted:
            connection.close()
        proxy.wait_log(" close=done", CLIENTS)
        check(proxy.stop() == 0, "qt-proxy did not exit 0")
    print("ok: bounded under back-pressure; half-close passed on")


if __name__ == "__main__":
    main()
