#!/usr/bin/env python3
"""Every applet has a man page, and its OPTIONS section lists exactly the
options that `--help` prints (for applets with subcommands: the union over the
applet and each subcommand's `--help`). Fails with the difference."""
import os
import re
import subprocess
import sys

QTBOX = os.environ["QTBOX"]
MAN = os.path.join(os.environ["QTBOX_SOURCE_ROOT"], "man")
LONG_OPTION = re.compile(r"(?<![\w-])--[a-z0-9][a-z0-9-]*")


def run_help(argv):
    result = subprocess.run([QTBOX, *argv, "--help"], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        sys.exit(f"FAIL: '{' '.join(argv)} --help' exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def help_options(text):
    """Long options of CLI11's 'Options:' sections, and the subcommand names."""
    options, subcommands, section = set(), [], None
    for line in text.splitlines():
        if re.match(r"^\S.*:\s*$", line):
            section = line.strip().rstrip(":").upper()
            continue
        if not line.startswith(" ") or not line.strip():
            continue
        first = line.split()[0]
        if section == "OPTIONS":
            options.update(LONG_OPTION.findall(first))
        elif section == "SUBCOMMANDS":
            subcommands.append(first)
    return options, subcommands


def collect(argv):
    options, subcommands = help_options(run_help(argv))
    for sub in subcommands:
        options |= collect(argv + [sub])
    return options


def man_options(page):
    text = open(page, encoding="utf-8").read().replace("\\-", "-").replace("\\fB", "").replace("\\fR", "").replace("\\fI", "")
    match = re.search(r"^\.SH\s+\"?OPTIONS\"?\s*$(.*?)(?=^\.SH\s)", text, re.M | re.S)
    if not match:
        sys.exit(f"FAIL: {page} has no OPTIONS section")
    return set(LONG_OPTION.findall(match.group(1)))


def main():
    applets = subprocess.run([QTBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    failures = []
    checked = 0
    for applet in ["qtbox", *applets]:
        pages = [os.path.join(MAN, f"{applet}.{section}") for section in ("1", "8")]
        page = next((p for p in pages if os.path.exists(p)), None)
        if page is None:
            failures.append(f"{applet}: no man page in man/")
            continue
        if applet == "qtbox":
            helped = set(LONG_OPTION.findall(run_help([])))
        else:
            helped = collect([applet])
        documented = man_options(page)
        if helped - documented:
            failures.append(f"{applet}: in --help but not in {os.path.basename(page)} OPTIONS: {sorted(helped - documented)}")
        if documented - helped:
            failures.append(f"{applet}: in {os.path.basename(page)} OPTIONS but not in --help: {sorted(documented - helped)}")
        checked += 1
    for failure in failures:
        print("FAIL:", failure, file=sys.stderr)
    print(f"checked {checked} man pages")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
