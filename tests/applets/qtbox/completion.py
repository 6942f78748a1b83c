#!/usr/bin/env python3
"""The bash completion (`qtbox --completion`, contrib/bash-completion/qtbox.bash)
offers, for every applet and every subcommand, exactly the options and
subcommands its `--help` prints, both through the applet links and as
`qtbox APPLET`; it is registered for qtbox and every applet; values are
completed from the option's type; and `qtbox --install PREFIX/bin` installs
it in PREFIX/share/bash-completion/completions. Fails with the differences."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

QTBOX = os.environ["QTBOX"]


def run_help(argv):
    result = subprocess.run([QTBOX, *argv, "--help"], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        sys.exit(f"FAIL: '{' '.join(argv)} --help' exited {result.returncode}")
    return result.stdout


def parse_help(text):
    """Every option name, the subcommands, and whether there are positionals."""
    options, subcommands, positionals, section = set(), [], False, None
    for line in text.splitlines():
        if re.match(r"^\S.*:\s*$", line):
            section = line.strip().rstrip(":").upper()
            continue
        if not line.startswith("  ") or line.startswith("   ") or not line.strip():
            continue
        first = line.split()[0]
        if section == "OPTIONS":
            options.update(name for name in first.split(",") if name.startswith("-"))
        elif section == "SUBCOMMANDS":
            subcommands.append(first)
        elif section == "POSITIONALS":
            positionals = True
    return options, subcommands, positionals


def walk(path):
    options, subcommands, positionals = parse_help(run_help(path))
    yield path, options, subcommands, positionals
    for sub in subcommands:
        yield from walk(path + [sub])


BASH_DRIVER = r'''
source <("$QTBOX" --completion) || exit 1
complete -p
while IFS= read -r line; do
    eval "words=($line)"
    COMP_WORDS=("${words[@]}")
    COMP_CWORD=$(( ${#words[@]} - 1 ))
    COMPREPLY=()
    _qtbox
    printf 'RESULT %s\n' "$(printf '%s\t' "${COMPREPLY[@]}")"
done
'''


def complete_all(cases, cwd, path_dir):
    """COMPREPLY for each case (a list of words, the last being the one completed)."""
    lines = "".join(" ".join("'" + w.replace("'", "'\\''") + "'" for w in case) + "\n" for case in cases)
    env = dict(os.environ, PATH=path_dir + os.pathsep + os.environ.get("PATH", ""))
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", BASH_DRIVER], input=lines, capture_output=True,
                            text=True, timeout=300, cwd=cwd, env=env)
    if result.returncode != 0:
        sys.exit(f"FAIL: bash exited {result.returncode}: {result.stderr.strip()}")
    registered, replies = result.stdout, []
    for line in result.stdout.splitlines():
        if line.startswith("RESULT "):
            replies.append(set(w for w in line[len("RESULT "):].split("\t") if w))
    if len(replies) != len(cases):
        sys.exit(f"FAIL: {len(replies)} answers for {len(cases)} cases: {result.stderr.strip()}")
    return registered, replies


def main():
    if shutil.which("bash") is None:
        print("SKIP: bash is not installed")
        return 77
    applets = subprocess.run([QTBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    failures = []
    with tempfile.TemporaryDirectory(prefix="qtbox-completion.") as work:
        bin_dir = os.path.join(work, "bin")
        os.mkdir(bin_dir)
        subprocess.run([QTBOX, "--install", "-s", bin_dir], check=True)
        if os.path.exists(os.path.join(work, "share")):
            failures.append("--install into a bin without a share/ beside it made share/")
        shutil.copy(QTBOX, os.path.join(bin_dir, "qtbox"))
        open(os.path.join(work, "data.txt"), "w").close()
        os.mkdir(os.path.join(work, "somedir"))

        cases, expected = [], []
        for applet in applets:
            for path, options, subcommands, positionals in walk([applet]):
                for prefix in ([], ["qtbox"]):
                    words = prefix + path
                    cases.append(words + ["-"])
                    expected.append((words, "options", options, True))
                    cases.append(words + [""])
                    expected.append((words, "subcommands", set(subcommands), not positionals))
        cases.append(["qtbox", ""])
        expected.append((["qtbox"], "applets", set(applets) | {"--completion", "--help", "--install", "--list", "--version"}, True))
        # Values from the type names.
        value_cases = [
            (["vmm", "--signature-order", ""], {"rfc9052", "qingtian"}),
            (["vmm", "--hugepages", ""], {"2", "1024"}),
            (["vmm", "--console", "d"], {"data.txt"}),
            (["vmm", "--console", "n"], {"none"}),
            (["qtbox", "vmm", "--eif", "d"], {"data.txt"}),
            (["eif-build", "--rootfs", "s"], {"somedir"}),
            (["eif-build", "describe", "d"], {"data.txt"}),
            (["eif-build", "--output", "x.eif", "--cmd", ""], set()),
            (["qt", "enclave", "start", "--eif", "d"], {"data.txt"}),
            (["qt", "env", "a"], {"apply"}),
            (["vmm", "--cpus", "=", ""], set()),
        ]
        for words, want in value_cases:
            cases.append(words)
            expected.append((words[:-1], "values", want, True))

        registered, replies = complete_all(cases, work, bin_dir)
        for (words, what, want, exact), got in zip(expected, replies):
            where = " ".join(words) or "(nothing)"
            if exact and got != want:
                failures.append(f"'{where}' {what}: missing {sorted(want - got)}, extra {sorted(got - want)}")
            if not exact and not want <= got:
                failures.append(f"'{where}' {what}: missing {sorted(want - got)}")
        for name in ["qtbox", *applets]:
            if not re.search(rf"^complete -F _qtbox .*(?<=\s){re.escape(name)}(\s|$)", registered, re.M):
                failures.append(f"the completion is not registered for {name}")

        # --install PREFIX/bin with PREFIX/share: the script and one link per applet.
        prefix = os.path.join(work, "prefix")
        os.makedirs(os.path.join(prefix, "bin"))
        os.makedirs(os.path.join(prefix, "share"))
        completions = os.path.join(prefix, "share", "bash-completion", "completions")
        for _ in range(2):
            installed = subprocess.run([QTBOX, "--install", "-s", os.path.join(prefix, "bin")], capture_output=True, text=True)
            if installed.returncode != 0:
                failures.append(f"--install into PREFIX/bin exited {installed.returncode}: {installed.stderr.strip()}")
        printed = subprocess.run([QTBOX, "--completion"], capture_output=True, text=True, check=True).stdout
        script = os.path.join(completions, "qtbox")
        if not os.path.exists(script) or open(script).read() != printed:
            failures.append(f"{script} is not what --completion prints")
        for applet in applets:
            link = os.path.join(completions, applet)
            if not os.path.islink(link) or os.readlink(link) != "qtbox":
                failures.append(f"{link} is not a link to qtbox")
        # Someone else's completion file is left alone, and said so.
        os.unlink(os.path.join(completions, "vmm"))
        open(os.path.join(completions, "vmm"), "w").write("# not ours\n")
        refused = subprocess.run([QTBOX, "--install", "-s", os.path.join(prefix, "bin")], capture_output=True, text=True)
        if refused.returncode != 1 or "is not qtbox's completion; left alone" not in refused.stderr:
            failures.append(f"a foreign completion file: exit {refused.returncode}, stderr {refused.stderr.strip()!r}")
        if open(os.path.join(completions, "vmm")).read() != "# not ours\n":
            failures.append("--install replaced a foreign completion file")

    for failure in failures:
        print("FAIL:", failure, file=sys.stderr)
    print(f"checked {len(cases)} completions of {len(applets)} applets")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
