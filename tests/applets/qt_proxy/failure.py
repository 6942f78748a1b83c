#!/usr/bin/env python3
"""Acceptance 3 (issue 6): an upstream that is down closes its clients
quickly, with a log line, while the proxy keeps serving other rules; an
upstream that resets mid-stream ends only that connection; 10 000
connect/close cycles leave the proxy's fd count and RSS flat."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxylib import Work, check, free_tcp_port, recv_all, roundtrip, unix_client  # noqa: E402

CYCLES = 10_000
WARMUP = 1_000
RSS_SLACK_KIB = 512


def cycle(path, payload):
    with unix_client(path) as s:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            data = s.recv(4096)
            if not data:
                break
            got += data
        return got == payload


def refused(path):
    """True when the proxy closes the client (end of file or a reset) before
    it sends anything; a client left open hits the socket timeout instead,
    which fails the test with the timeout's own error."""
    with unix_client(path) as s:
        try:
            return recv_all(s) == b""
        except ConnectionResetError:
            return True


def main():
    with Work() as work:
        _, echo_port = work.start_helper("echo")
        _, reset_port = work.start_helper("reset", str(256 * 1024))
        down_port = free_tcp_port()
        config = work.file("proxy.toml", f"""
[[outbound]]
vsock_port = 1000
host = "127.0.0.1"
port = {down_port}

[[outbound]]
vsock_port = 1001
host = "127.0.0.1"
port = {echo_port}

[[outbound]]
vsock_port = 1002
host = "127.0.0.1"
port = {reset_port}
""")
        proxy = work.start_proxy(["--config", config, "--af-vsock", "off"])
        vsock = os.path.join(work.run, "vsock")
        down, echo, reset = (os.path.join(vsock, f"3_{port}") for port in (1000, 1001, 1002))

        # Upstream down: the proxy closes every client itself (it is not
        # left to a timeout), and each close has its own log line.
        for number in range(1, 21):
            check(refused(down), "a client of a down upstream got data")
            lines = proxy.wait_log("rule=out:1000", number)
            check(len(lines) == number, f"{len(lines)} log lines after {number} closed clients")
            check("close=connect_failed" in lines[-1] and "Connection refused" in lines[-1], f"unexpected: {lines[-1]}")
        with unix_client(echo) as s:
            check(roundtrip(s, b"other rule") == b"other rule", "the echo rule stopped working")

        # Reset mid-stream: the reset connection ends, a neighbour does not.
        neighbour = unix_client(echo)
        neighbour.sendall(b"first half ")
        victim = unix_client(reset)
        victim.settimeout(10)
        sent = 0
        chunk = b"x" * 65536
        ended = False
        try:
            while sent < 64 * 1024 * 1024:
                victim.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            ended = True
        if not ended:
            try:
                while victim.recv(65536):
                    pass
                ended = True
            except ConnectionResetError:
                ended = True
        victim.close()
        check(ended, "the client of a resetting upstream was not closed")
        line = proxy.wait_log("rule=out:1002")[0]
        # The first operation after the RST reports ECONNRESET; a write that
        # races with it may see EPIPE instead. Either way: target_error.
        check("close=target_error" in line and ("Connection reset by peer" in line or "Broken pipe" in line), f"unexpected: {line}")
        neighbour.sendall(b"second half")
        neighbour.shutdown(socket.SHUT_WR)
        check(recv_all(neighbour) == b"first half second half", "the neighbour of a reset connection was disturbed")
        neighbour.close()

        # 10 000 connect/close cycles, one in ten to the down upstream.
        payload = b"0123456789abcdef"

        def run(count):
            for i in range(count):
                if i % 10 == 9:
                    check(refused(down), "refused cycle got data")
                else:
                    check(cycle(echo, payload), f"cycle {i} failed")

        def settled():
            # Every finished connection has logged its line (and so has
            # closed its descriptors) before we measure.
            expected = len(proxy.lines(" conn="))
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                time.sleep(0.2)
                now = len(proxy.lines(" conn="))
                if now == expected:
                    return
                expected = now

        run(WARMUP)
        settled()
        fds_before, rss_before = proxy.fds(), proxy.rss_kib()
        started = time.monotonic()
        run(CYCLES)
        settled()
        elapsed = time.monotonic() - started
        fds_after, rss_after = proxy.fds(), proxy.rss_kib()
        print(f"{CYCLES} cycles in {elapsed:.1f}s: fds {fds_before} -> {fds_after}, VmRSS {rss_before} -> {rss_after} KiB")
        check(fds_after == fds_before, f"fd count grew from {fds_before} to {fds_after}")
        check(rss_after <= rss_before + RSS_SLACK_KIB, f"VmRSS grew from {rss_before} to {rss_after} KiB")
        check(proxy.process.poll() is None, "qt-proxy died")
        check(proxy.stop() == 0, "qt-proxy did not exit 0 on SIGTERM")
    print("ok: failures stay local; fds and RSS flat")


if __name__ == "__main__":
    main()
