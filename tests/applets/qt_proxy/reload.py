#!/usr/bin/env python3
"""SIGHUP reloads the configuration under seccomp without dropping live
connections: listeners come and go (socket files made and removed), a bad
file or a listener that cannot be bound is rejected with a log line and the
running configuration kept. SIGTERM then exits 0 and removes the sockets."""
import os
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxylib import Work, check, free_tcp_port, recv_all, roundtrip, unix_client, wait_path  # noqa: E402


def rule(vsock_port, port):
    return f'[[outbound]]\nvsock_port = {vsock_port}\nhost = "127.0.0.1"\nport = {port}\n'


def main():
    with Work() as work:
        _, echo_port = work.start_helper("echo")
        vsock = os.path.join(work.run, "vsock")
        config = work.file("proxy.toml", rule(8000, echo_port))
        proxy = work.start_proxy(["--config", config, "--af-vsock", "off"])
        wait_path(os.path.join(vsock, "3_8000"))

        live = unix_client(os.path.join(vsock, "3_8000"))
        live.sendall(b"before reload, ")

        def reload(text, needle, count):
            work.file("proxy.toml", text)
            proxy.signal(signal.SIGHUP)
            return proxy.wait_log(needle, count)[-1]

        # 8000 goes, 8001 and a TCP listener come.
        inbound_port = free_tcp_port()
        os.makedirs(os.path.join(work.run, "enclaves", "0"))
        work.start_helper("vmm", os.path.join(work.run, "enclaves", "0", "vsock.sock"))
        reload(rule(8001, echo_port) + f'[[inbound]]\nlisten = "127.0.0.1:{inbound_port}"\nenclave_id = 0\nvsock_port = 80\n',
               "reloaded: 2 listeners, 1 connections kept", 1)
        wait_path(os.path.join(vsock, "3_8000"), present=False)
        wait_path(os.path.join(vsock, "3_8001"))
        with unix_client(os.path.join(vsock, "3_8001")) as s:
            check(roundtrip(s, b"new rule") == b"new rule", "the rule added by SIGHUP does not work")
        with socket.create_connection(("127.0.0.1", inbound_port), timeout=10) as s:
            check(roundtrip(s, b"in") == b"port=80;in", "the inbound listener added by SIGHUP does not work")

        # A file with an error: rejected, named, nothing changes.
        line = reload(rule(8001, echo_port) + "[limits]\nidle = 5\n", "reload rejected", 1)
        check(line.endswith(f"qt-proxy: reload rejected, keeping the running configuration: {config}:6: [limits]: unknown key 'idle'"),
              f"unexpected: {line}")
        # A listener that cannot be had: rejected as a whole.
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            held = holder.getsockname()[1]
            line = reload(rule(8001, echo_port) + rule(8002, echo_port) +
                          f'[[inbound]]\nlisten = "127.0.0.1:{held}"\nenclave_id = 0\nvsock_port = 80\n', "reload rejected", 2)
            check(line.endswith(f"bind 127.0.0.1:{held}: Address already in use"), f"unexpected: {line}")
        check(not os.path.exists(os.path.join(vsock, "3_8002")), "a rejected reload left 3_8002 behind")
        with unix_client(os.path.join(vsock, "3_8001")) as s:
            check(roundtrip(s, b"still") == b"still", "8001 stopped working after a rejected reload")

        # The connection from before the first reload is intact.
        live.sendall(b"after reload")
        live.shutdown(socket.SHUT_WR)
        check(recv_all(live) == b"before reload, after reload", "a live connection was disturbed by SIGHUP")
        live.close()

        check(proxy.status("Seccomp") == "2", "seccomp is not active")
        check(proxy.process.poll() is None, f"qt-proxy exited: {proxy.text()[-2000:]}")
        check(proxy.stop() == 0, "qt-proxy did not exit 0 on SIGTERM")
        check(not os.path.exists(os.path.join(vsock, "3_8001")), "socket file left behind on exit")
        check("seccomp: system call" not in proxy.text(), "a seccomp violation was reported")
    print("ok: SIGHUP reloads under seccomp")


if __name__ == "__main__":
    main()
