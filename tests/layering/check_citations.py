#!/usr/bin/env python3
"""Checks that every citation in the tree points at a document in the repo.

Comments cite the project's own docs: a numbered section of FORMATS or
PLATFORMS (in docs/), or a quoted section title of ARCHITECTURE. Each cited
section must exist as a heading of that file, and no file may cite the
design notes the project was started from, which are not part of the repo
(the patterns in FOREIGN below).

tests/layering/ itself is not scanned: its self-tests write bad citations
on purpose, into temporary trees.

Usage: check_citations.py [SOURCE_ROOT]. One line per bad citation; exit 1
when there is any.
"""
import os
import re
import subprocess
import sys

SCANNED = ("src", "include", "applets", "lib", "tests", "fuzz", "scripts", "bench", "man", "contrib", "docs",
           "README.md", "meson.build", "meson_options.txt", ".ci")
# Names of documents outside the repo. Spelled in pieces so that this file
# does not match itself.
FOREIGN = [
    re.compile(r"\bSPEC" + r"(\.md)? §"),
    re.compile(r"\bSPEC" + r"\.md\b"),
    re.compile(r"\bDESIGN" + r"\.md\b"),
    re.compile(r"\bSTYLE" + r"\.md\b"),
    re.compile(r"\b(nitro|qingtian|vmm)" + r"\.md\b"),
    re.compile(r"\breference" + r"/"),
    re.compile(r"\.\./" + r"shared\b"),
]
SECTION_LIST = r"(§[A-Z]?[0-9]*(?:\.[0-9]+)*(?:\s*(?:,|and|–|-)\s*§[A-Z]?[0-9]*(?:\.[0-9]+)*)*)"
NUMBERED = re.compile(r"\b(FORMATS|PLATFORMS)\.md\s+" + SECTION_LIST)
QUOTED = re.compile(r'\bARCHITECTURE\.md\s+"([^"\n]+)"')
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$", re.MULTILINE)


def headings(path):
    with open(path, encoding="utf-8") as f:
        return [m.group(1) for m in HEADING.finditer(f.read())]


def files(root):
    listed = subprocess.run(["git", "-C", root, "ls-files", "--cached", "--others", "--exclude-standard", "--", *SCANNED],
                            capture_output=True, text=True)
    if listed.returncode == 0 and listed.stdout.strip():
        for name in listed.stdout.splitlines():
            if os.path.isfile(os.path.join(root, name)):
                yield name
        return
    for top in SCANNED:  # not a git checkout (a release tarball)
        base = os.path.join(root, top)
        if os.path.isfile(base):
            yield top
        for directory, _, names in os.walk(base):
            for name in names:
                yield os.path.relpath(os.path.join(directory, name), root)


def check(root):
    docs = {
        "FORMATS": headings(os.path.join(root, "docs", "FORMATS.md")),
        "PLATFORMS": headings(os.path.join(root, "docs", "PLATFORMS.md")),
        "ARCHITECTURE": headings(os.path.join(root, "docs", "ARCHITECTURE.md")),
    }
    sections = {name: {h.split()[0] for h in found if h.startswith("§")} for name, found in docs.items()}
    titles = set(docs["ARCHITECTURE"])
    problems = []
    for name in sorted(files(root)):
        if name.startswith("tests/layering/"):
            continue
        if name.endswith((".png", ".b64", ".der", ".pem", ".cbor", ".bin", ".tar", ".gz")) or "/corpus/" in name or "/regressions/" in name:
            continue
        try:
            with open(os.path.join(root, name), encoding="utf-8") as f:
                text = f.read()
        except (UnicodeDecodeError, OSError):
            continue
        # Joined lines, so that a citation wrapped in a comment is seen whole.
        flat = re.sub(r"\n\s*(//|#|\*|;|\.\\\")?\s*", " ", text)
        for pattern in FOREIGN:
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                problems.append(f"{name}:{line}: cites '{match.group(0)}', a document outside the repo")
        for match in NUMBERED.finditer(flat):
            document = match.group(1)
            for section in re.findall(r"§[A-Z]?[0-9]*(?:\.[0-9]+)*", match.group(2)):
                if section == "§":
                    problems.append(f"{name}: cites {document}.md with an empty section number")
                    continue
                if section not in sections[document]:
                    problems.append(f"{name}: cites {document}.md {section}, which docs/{document}.md has no heading for")
        for match in QUOTED.finditer(flat):
            if match.group(1) not in titles:
                problems.append(f'{name}: cites ARCHITECTURE.md "{match.group(1)}", which docs/ARCHITECTURE.md has no heading for')
    return problems


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    problems = check(os.path.abspath(root))
    for problem in problems:
        print(problem)
    if problems:
        print(f"check_citations: {len(problems)} citation(s) do not resolve to a file in the repo", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
