#!/usr/bin/env python3
"""Checks every #include in the tree against the module graph.

The graph is the ```modules block of docs/ARCHITECTURE.md ("Module
dependencies"): one line per module, naming the modules it builds on
directly. The rules checked here are the ones that section states:

  - a file of module M (src/M/..., include/qtbox/M/...) may include
    <qtbox/X/...> only when X is M or X is reachable from M; the graph must
    be acyclic and every module must have a directory;
  - a quoted include is resolved as the compiler would without src/ on the
    include path (relative to the including file): inside src/ it must stay
    in the same module's directory; a module's private headers are open to
    that module and to tests/<module>/ only;
  - nothing in src/ or include/ includes applets/; applets include public
    headers only (plus their own folder); test tools that are programs may
    use applets/support/;
  - tests/<suite>/ and fuzz/ may include any public header, their own folder
    and tests/support/, never another suite's folder nor another module's
    private header;
  - lib/ (the C library) includes no qtbox header.

Usage: check_includes.py [SOURCE_ROOT]. Prints one line per violation and
exits 1 when there is any, 0 otherwise.
"""
import os
import re
import sys

CODE_SUFFIXES = (".cpp", ".hpp", ".h", ".c", ".inc")
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.MULTILINE)


def parse_graph(architecture_text):
    match = re.search(r"```modules\n(.*?)```", architecture_text, re.DOTALL)
    if not match:
        raise ValueError('docs/ARCHITECTURE.md has no ```modules block')
    graph = {}
    for number, line in enumerate(match.group(1).splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        name, sep, rest = line.partition(":")
        if not sep:
            raise ValueError(f"modules block line {number}: expected 'module: deps...': {line!r}")
        name = name.strip()
        if name in graph:
            raise ValueError(f"modules block: {name} is listed twice")
        graph[name] = rest.split()
    for name, deps in graph.items():
        for dep in deps:
            if dep not in graph:
                raise ValueError(f"modules block: {name} depends on unknown module {dep}")
    return graph


def reachability(graph):
    """module -> set of modules it may include (itself included). Raises on a cycle."""
    reach = {}
    state = {}

    def visit(name, path):
        if state.get(name) == "done":
            return reach[name]
        if state.get(name) == "active":
            cycle = path[path.index(name):] + [name]
            raise ValueError("modules block: dependency cycle " + " -> ".join(cycle))
        state[name] = "active"
        result = {name}
        for dep in graph[name]:
            result |= visit(dep, path + [name])
        state[name] = "done"
        reach[name] = result
        return result

    for name in graph:
        visit(name, [])
    return reach


def module_of(relative, prefix, modules):
    """The module a path under `prefix` (e.g. 'src/') belongs to: the longest
    module name that is a directory prefix (devices/virtio before devices)."""
    if not relative.startswith(prefix):
        return None
    rest = relative[len(prefix):]
    best = None
    for name in modules:
        if rest.startswith(name + "/") and (best is None or len(name) > len(best)):
            best = name
    return best


def public_module(target, modules):
    """<qtbox/devices/virtio/queue.hpp> -> devices/virtio."""
    if not target.startswith("qtbox/"):
        return None
    return module_of("include/" + target, "include/qtbox/", modules) or "?"


def code_files(root, top):
    base = os.path.join(root, top)
    for directory, subdirs, files in os.walk(base):
        subdirs.sort()
        for name in sorted(files):
            if name.endswith(CODE_SUFFIXES):
                path = os.path.join(directory, name)
                yield os.path.relpath(path, root).replace(os.sep, "/")


def check(root):
    with open(os.path.join(root, "docs", "ARCHITECTURE.md"), encoding="utf-8") as f:
        graph = parse_graph(f.read())
    reach = reachability(graph)
    modules = list(graph)
    problems = []

    for name in modules:
        if not os.path.isdir(os.path.join(root, "src", name)) and not os.path.isdir(os.path.join(root, "include", "qtbox", name)):
            # A module may be declared before its first file lands (a
            # documented placeholder in the graph), but then nothing may
            # depend on it yet.
            users = [m for m, deps in graph.items() if name in deps]
            if users:
                problems.append(f"docs/ARCHITECTURE.md: module {name} has no directory but {', '.join(users)} depend(s) on it")

    for top in ("src", "include", "applets", "tests", "fuzz", "lib"):
        for relative in code_files(root, top):
            path = os.path.join(root, relative)
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
            own = module_of(relative, "src/", modules) or module_of(relative, "include/qtbox/", modules)
            if top in ("src", "include") and own is None:
                problems.append(f"{relative}: not inside a module directory (docs/ARCHITECTURE.md \"Module dependencies\")")
                continue
            for match in INCLUDE.finditer(text):
                kind, target = match.group(1), match.group(2)
                line = text.count("\n", 0, match.start()) + 1
                where = f"{relative}:{line}: #include {kind}{target}{'>' if kind == '<' else kind}"
                if kind == "<":
                    if not target.startswith("qtbox/"):
                        continue
                    if top == "lib":
                        problems.append(f"{where}: lib/ is a C library and includes no qtbox header")
                        continue
                    wanted = public_module(target, modules)
                    if wanted == "?" or not os.path.isfile(os.path.join(root, "include", target)):
                        problems.append(f"{where}: no such public header")
                        continue
                    if own is not None and wanted not in reach[own]:
                        problems.append(f"{where}: module {own} may not include module {wanted} (see the graph in docs/ARCHITECTURE.md)")
                    continue
                # A quoted include: where does it land?
                resolved = os.path.normpath(os.path.join(os.path.dirname(relative), target)).replace(os.sep, "/")
                if not os.path.isfile(os.path.join(root, resolved)):
                    if relative == "applets/main.cpp" and target == "applet_table.inc":
                        continue  # generated into the build directory
                    if top in ("tests", "fuzz") and os.path.isfile(os.path.join(root, "lib", "qtsm", target)):
                        continue  # the C library's public header (qtsm_lib.h)
                    problems.append(f"{where}: does not resolve next to the including file (src/ is not on the include path)")
                    continue
                if resolved.startswith("applets/") and top != "applets":
                    # Test tools that are programs may use the programs'
                    # helpers (applets/support/); library code never.
                    if not (top in ("tests", "fuzz") and resolved.startswith("applets/support/")):
                        problems.append(f"{where}: {top}/ never includes applets/")
                    continue
                target_module = module_of(resolved, "src/", modules)
                if resolved.startswith("src/"):
                    if top == "src":
                        if target_module != own:
                            problems.append(f"{where}: private header of module {target_module}, included from module {own}")
                    elif top == "tests":
                        suite = relative.split("/")[1]
                        if target_module != suite:
                            problems.append(f"{where}: private header of module {target_module}; only tests/{target_module}/ may use it")
                    else:
                        problems.append(f"{where}: private header of module {target_module}")
                    continue
                if resolved.startswith("include/"):
                    problems.append(f"{where}: include public headers as <qtbox/...>")
                    continue
                if top == "tests":
                    suite = relative.split("/")[1]
                    allowed = (f"tests/{suite}/", "tests/support/")
                    if not resolved.startswith(allowed):
                        problems.append(f"{where}: reaches into another suite's folder; shared helpers live in tests/support/")
                elif top == "fuzz":
                    if not resolved.startswith(("fuzz/", "tests/support/")):
                        problems.append(f"{where}: fuzz targets share helpers through tests/support/ only")
                elif top == "applets":
                    if not resolved.startswith("applets/"):
                        problems.append(f"{where}: applets include their own folder and public headers only")
                elif top == "lib":
                    if not resolved.startswith("lib/"):
                        problems.append(f"{where}: lib/ includes only its own files")
    return problems


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    try:
        problems = check(os.path.abspath(root))
    except (OSError, ValueError) as error:
        print(f"check_includes: {error}", file=sys.stderr)
        return 1
    for problem in problems:
        print(problem)
    if problems:
        print(f"check_includes: {len(problems)} include(s) break the layering of docs/ARCHITECTURE.md", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
