#!/usr/bin/env python3
"""qt-proxy --user (qt-proxy(1) --user, SECURITY): started as root, it runs as
the system account qtbox when passwd has it (else it stays root and says
why), or as the account --user names, once its listeners are bound; the socket directory and its
sockets belong to that account (0660), a SIGHUP reload still makes and
removes sockets there (through the directory fd, under seccomp and, where
the kernel has it, Landlock), and the ready line says whether Landlock is on.
An unknown account is refused before anything is bound."""
import os
import pwd
import signal
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxylib import Work, check, roundtrip, service_account, skip, unix_client, wait_path  # noqa: E402


def rule(vsock_port, port):
    return f'[[outbound]]\nvsock_port = {vsock_port}\nhost = "127.0.0.1"\nport = {port}\n'


def main():
    if os.geteuid() != 0:
        skip("switching users needs root")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        skip("no 'nobody' account to switch to")
    with Work() as work:
        # The account reads the configuration again on SIGHUP.
        os.chmod(work.path, 0o755)
        _, echo_port = work.start_helper("echo")
        vsock = os.path.join(work.run, "vsock")
        config = work.file("proxy.toml", rule(8000, echo_port))
        os.chmod(config, 0o644)

        refused = subprocess.run([work.proxy_path(), "--user", "no-such-account-qtbox", "--config", config, "--af-vsock", "off"],
                                 capture_output=True, text=True, env={**os.environ, "QTBOX_RUN_DIR": work.run})
        check(refused.returncode == 1, f"an unknown --user exited {refused.returncode}: {refused.stderr}")
        check(refused.stderr == "qt-proxy: --user: user no-such-account-qtbox: not in /etc/passwd\n", f"unexpected: {refused.stderr!r}")
        check(not os.path.exists(os.path.join(vsock, "3_8000")), "a refused start bound a socket")

        # Without --user: the account qtbox when /etc/passwd has it
        # (scripts/setup creates it), else root stays root and says why.
        account = service_account()
        default = work.start_proxy(["--config", config, "--af-vsock", "off"], name="default")
        if account:
            uid, gid = account
            check(len(default.lines(f"running as user qtbox (uid {uid}, gid {gid})")) == 1,
                  f"no switch to qtbox logged:\n{default.text()}")
            check(default.status("Uid").split() == [str(uid)] * 4, f"not qtbox's uids by default: {default.status('Uid')}")
            check(default.status("Gid").split() == [str(gid)] * 4, f"not qtbox's gids by default: {default.status('Gid')}")
            socket_file = os.lstat(os.path.join(vsock, "3_8000"))
            check((socket_file.st_uid, socket_file.st_gid, stat.S_IMODE(socket_file.st_mode)) == (uid, gid, 0o660),
                  f"3_8000: {socket_file.st_uid}:{socket_file.st_gid} {oct(socket_file.st_mode)}")
        else:
            check(len(default.lines("running as root: user qtbox: not in /etc/passwd "
                                    "(create the 'qtbox' system user, or pass --user)")) == 1,
                  f"root staying root is not explained:\n{default.text()}")
            check(default.status("Uid").split() == ["0"] * 4, f"uids without a qtbox account: {default.status('Uid')}")
        check(default.status("Seccomp") == "2", "not under seccomp by default")
        with unix_client(os.path.join(vsock, "3_8000")) as s:
            check(roundtrip(s, b"default") == b"default", "forwarding does not work with the default account")
        check(default.stop() == 0, f"qt-proxy (default account) did not exit 0:\n{default.text()}")
        wait_path(os.path.join(vsock, "3_8000"), present=False)

        proxy = work.start_proxy(["--user", "nobody", "--config", config, "--af-vsock", "off"])
        ready = proxy.lines("ready: ")[0]
        check(ready.endswith(", landlock on") or ready.endswith(", landlock off"), f"the ready line does not say Landlock's state: {ready}")
        if ready.endswith(", landlock off"):
            check(len(proxy.lines("landlock: not available in this kernel")) == 1, "Landlock is off and no line says why")
        check(len(proxy.lines(f"running as user nobody (uid {nobody.pw_uid}, gid {nobody.pw_gid})")) == 1,
              f"the switch is not logged:\n{proxy.text()}")
        uids = proxy.status("Uid").split()
        gids = proxy.status("Gid").split()
        check(uids == [str(nobody.pw_uid)] * 4, f"still running with uids {uids}")
        check(gids == [str(nobody.pw_gid)] * 4, f"still running with gids {gids}")
        check(proxy.status("Groups") in ("", str(nobody.pw_gid)), f"supplementary groups kept: {proxy.status('Groups')}")
        check(proxy.status("Seccomp") == "2", "not under seccomp")

        directory = os.stat(vsock)
        check(directory.st_uid == nobody.pw_uid, "the socket directory was not given to the account")
        first = os.lstat(os.path.join(vsock, "3_8000"))
        check(stat.S_ISSOCK(first.st_mode) and stat.S_IMODE(first.st_mode) == 0o660, f"3_8000 mode {oct(first.st_mode)}")
        check(first.st_uid == nobody.pw_uid, "3_8000, bound as root, was not given to the account")
        with unix_client(os.path.join(vsock, "3_8000")) as s:
            check(roundtrip(s, b"as nobody") == b"as nobody", "forwarding does not work after the switch")

        # A reload as the account: 8000 goes (unlinkat on the directory fd), 8001 comes.
        work.file("proxy.toml", rule(8001, echo_port))
        proxy.signal(signal.SIGHUP)
        proxy.wait_log("reloaded: 1 listeners")
        wait_path(os.path.join(vsock, "3_8000"), present=False)
        wait_path(os.path.join(vsock, "3_8001"))
        second = os.lstat(os.path.join(vsock, "3_8001"))
        check(second.st_uid == nobody.pw_uid and stat.S_IMODE(second.st_mode) == 0o660,
              f"3_8001: uid {second.st_uid}, mode {oct(second.st_mode)}")
        with unix_client(os.path.join(vsock, "3_8001")) as s:
            check(roundtrip(s, b"reloaded") == b"reloaded", "the reloaded rule does not work")
        check("seccomp: system call" not in proxy.text(), f"a seccomp violation:\n{proxy.text()}")
        check(proxy.stop() == 0, f"qt-proxy did not exit 0:\n{proxy.text()}")
        check(not os.path.exists(os.path.join(vsock, "3_8001")), "3_8001 left behind")
    print("ok: qt-proxy --user nobody")


if __name__ == "__main__":
    main()
