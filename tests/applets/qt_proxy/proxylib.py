#!/usr/bin/env python3
"""Shared pieces of the qt-proxy golden tests.

As a module: a private work directory with the applet links (like lib.sh),
starting qt-proxy and reading its log, /proc measurements, and fake peers.
As a program (`proxylib.py echo|reset|connect-echo ...`): the fake peers,
run as separate processes so that they do not share a GIL with the client.
"""
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

QTBOX = os.environ.get("QTBOX", "")
HERE = os.path.dirname(os.path.abspath(__file__))
SKIP = 77


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def skip(message):
    print(f"SKIP: {message}")
    sys.exit(SKIP)


def check(condition, message):
    if not condition:
        fail(message)


def raise_fd_limit():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def service_account():
    """(uid, gid) of the account qt-proxy switches to when started as root
    without --user (qt-proxy(1)): the system account qtbox, when /etc/passwd
    has it (scripts/setup creates it); None when qt-proxy stays root here."""
    if os.geteuid() != 0:
        return None
    with open("/etc/passwd", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            if len(fields) == 7 and fields[0] == "qtbox":
                return int(fields[2]), int(fields[3])
    return None


def service_socket(path):
    """A Unix socket bound at `path` the way vmm makes an enclave's
    vsock.sock: mode 0660 and, when qt-proxy switches to the service
    account, in that account's group, both from birth (the umask and the
    effective group at bind time), so that the proxy can connect."""
    account = service_account()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o117)
    if account:
        os.setegid(account[1])
    try:
        s.bind(path)
    finally:
        if account:
            os.setegid(0)
        os.umask(old_umask)
    return s


class Work:
    """A temporary directory with bin/ (applet links) and run/ (QTBOX_RUN_DIR).
    When qt-proxy switches to the service account, the directory belongs to
    that account's group (0750), so that what the proxy reads again (its
    configuration, hosts file) and reaches (sockets) stays in reach."""

    def __init__(self):
        if not QTBOX:
            fail("QTBOX must point at the built qtbox binary")
        self.path = tempfile.mkdtemp(prefix="qtbox-proxy-test.")
        account = service_account()
        if account:
            os.chown(self.path, -1, account[1])
            os.chmod(self.path, 0o750)
        self.bin = os.path.join(self.path, "bin")
        self.run = os.path.join(self.path, "run")
        os.makedirs(self.bin)
        os.makedirs(self.run)
        subprocess.run([QTBOX, "--install", "-s", self.bin], check=True)
        self.processes = []

    def proxy_path(self):
        return os.path.join(self.bin, "qt-proxy")

    def file(self, name, text=None):
        path = os.path.join(self.path, name)
        if text is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        return path

    def start_proxy(self, args, name="proxy", env=None, wait_ready=True):
        log = self.file(f"{name}.log")
        environment = dict(os.environ)
        environment["QTBOX_RUN_DIR"] = self.run
        environment.pop("JOURNAL_STREAM", None)
        environment.update(env or {})
        with open(log, "wb") as out:
            process = subprocess.Popen([self.proxy_path(), *args], stdout=out, stderr=subprocess.STDOUT, env=environment)
        proxy = Proxy(process, log)
        self.processes.append(process)
        if wait_ready:
            proxy.wait_log("ready: ")
        return proxy

    def start_helper(self, *args):
        """Starts `proxylib.py ARGS`; returns (process, first stdout line)."""
        process = subprocess.Popen([sys.executable, os.path.join(HERE, "proxylib.py"), *args],
                                   stdout=subprocess.PIPE, text=True)
        self.processes.append(process)
        line = process.stdout.readline().strip()
        check(line != "", f"helper {args} did not start")
        return process, line

    def close(self):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Proxy:
    def __init__(self, process, log):
        self.process = process
        self.log = log

    @property
    def pid(self):
        return self.process.pid

    def text(self):
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return f.read()

    def lines(self, needle):
        return [line for line in self.text().splitlines() if needle in line]

    def wait_log(self, needle, count=1, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.lines(needle)) >= count:
                return self.lines(needle)
            if self.process.poll() is not None:
                fail(f"qt-proxy exited {self.process.returncode} while waiting for '{needle}':\n{self.text()[-3000:]}")
            time.sleep(0.02)
        fail(f"no {count} log lines with '{needle}' within {timeout}s:\n{self.text()[-3000:]}")

    def fds(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def status(self, field):
        with open(f"/proc/{self.pid}/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return line.split(":", 1)[1].strip()
        fail(f"no {field} in /proc/{self.pid}/status")

    def rss_kib(self):
        return int(self.status("VmRSS").split()[0])

    def signal(self, number):
        os.kill(self.pid, number)

    def stop(self, timeout=10):
        """SIGTERM; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            fail("qt-proxy did not exit within 10 s of SIGTERM")


def wait_path(path, present=True, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) == present:
            return
        time.sleep(0.01)
    fail(f"{path} {'did not appear' if present else 'was not removed'} within {timeout}s")


# Ports the tests hand to qt-proxy come from below Linux's ephemeral range
# (32768-60999 by default): a port picked by bind(0) and then closed could be
# taken by any concurrent test's outgoing connection before qt-proxy binds it
# (seen once in 160 parallel runs), while nothing allocates these on its own.
TEST_PORTS = range(20000, 32000)


def free_tcp_port():
    import random
    for _ in range(1000):
        port = random.choice(TEST_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    fail("no free TCP port in 20000-31999")


def unix_client(path, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def recv_all(s):
    chunks = []
    while True:
        data = s.recv(1 << 16)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def roundtrip(s, payload):
    """Sends payload, half-closes, returns everything until EOF."""
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    return recv_all(s)


# ---- fake peers (run as `proxylib.py MODE ...`) ----

class Echo(asyncio.Protocol):
    """Echoes, with flow control both ways, and passes a half-close on."""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()

    def eof_received(self):
        if self.transport.can_write_eof():
            self.transport.write_eof()
        return True


class ResetAfter(asyncio.Protocol):
    """Reads a little, then resets the connection (SO_LINGER 0)."""

    def __init__(self, limit):
        self.limit = limit
        self.seen = 0

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.seen += len(data)
        self.transport.write(data)
        if self.seen >= self.limit:
            sock = self.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.transport.abort()


class FakeVmm(asyncio.Protocol):
    """An enclave's vsock.sock: answers CONNECT like the VMM, then echoes
    with the port prefixed once, so the test sees which port was asked."""

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""
        self.open = False

    def data_received(self, data):
        if self.open:
            self.transport.write(data)
            return
        self.buffer += data
        if b"\n" not in self.buffer:
            return
        line, rest = self.buffer.split(b"\n", 1)
        if not line.startswith(b"CONNECT "):
            self.transport.write(b"ERR\n")
            self.transport.close()
            return
        port = line[8:].decode()
        self.open = True
        self.transport.write(f"OK 1073741824\nport={port};".encode())
        if rest:
            self.transport.write(rest)

    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()

    def eof_received(self):
        self.transport.write_eof()
        return True


async def serve(mode, args):
    loop = asyncio.get_running_loop()
    if mode == "echo":
        server = await loop.create_server(Echo, "127.0.0.1", 0, backlog=4096)
    elif mode == "reset":
        server = await loop.create_server(lambda: ResetAfter(int(args[0])), "127.0.0.1", 0, backlog=128)
    elif mode == "vmm":
        os.makedirs(os.path.dirname(args[0]), exist_ok=True)
        server = await loop.create_unix_server(FakeVmm, sock=service_socket(args[0]), backlog=1024)
    else:
        raise SystemExit(f"unknown mode {mode}")
    if mode == "vmm":
        print(args[0], flush=True)
    else:
        print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    raise_fd_limit()
    try:
        asyncio.run(serve(sys.argv[1], sys.argv[2:]))
    except KeyboardInterrupt:
        pass
