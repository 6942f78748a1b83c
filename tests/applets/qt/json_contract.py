#!/usr/bin/env python3
"""The JSON contract of `qt` (docs/FORMATS.md §7): every JSON that `qt`
prints is checked against tests/applets/qt/schema.json: exactly the key
names, in QingTian's spelling, with the JSON types scripts written for
QingTian's `qt` rely on. A key added, removed, renamed or retyped fails.

The enclave commands run against a stand-in vmm (QTBOX_VMM) that says
"ready" on its --ready-fd, so no VM is needed; make-img and query-eif build
and read a real EIF with the guest modules of QTBOX_BLOBS.

Usage: json_contract.py (run by meson with QTBOX, QTBOX_SOURCE_ROOT set)
"""
import json
import os
import subprocess
import sys
import tempfile

QTBOX = os.environ["QTBOX"]
ROOT = os.environ["QTBOX_SOURCE_ROOT"]
BLOBS = os.environ.get("QTBOX_BLOBS") or os.path.join(ROOT, ".cache", "blobs")
SKIP = 77
TYPES = {"int": int, "str": str, "bool": bool, "array": list, "object": dict, "null": type(None)}


def check(value, schema, where):
    """schema: a type name ("int", "str|null"...), a list [item schema], or a
    dict {key: schema} that must match the keys exactly."""
    if isinstance(schema, str):
        allowed = tuple(TYPES[name] for name in schema.split("|"))
        # JSON true/false are not numbers here.
        if isinstance(value, bool) and bool not in allowed:
            raise AssertionError(f"{where}: {value!r} is a bool, expected {schema}")
        if not isinstance(value, allowed):
            raise AssertionError(f"{where}: {value!r} is not {schema}")
        return
    if isinstance(schema, list):
        if not isinstance(value, list):
            raise AssertionError(f"{where}: expected an array, got {value!r}")
        for index, item in enumerate(value):
            check(item, schema[0], f"{where}[{index}]")
        return
    if not isinstance(value, dict):
        raise AssertionError(f"{where}: expected an object, got {value!r}")
    if list(value) != list(schema):
        raise AssertionError(f"{where}: keys {list(value)}, expected {list(schema)} (names and order)")
    for key, sub in schema.items():
        check(value[key], sub, f"{where}.{key}")


def run(*args, env, expect=0):
    result = subprocess.run([QTBOX, *args], capture_output=True, text=True, env=env)
    if result.returncode != expect:
        raise AssertionError(f"qtbox {' '.join(args)} exited {result.returncode}, expected {expect}: {result.stderr.strip()}")
    return result.stdout


def main():
    if not os.path.isdir(os.path.join(BLOBS, "modules")):
        if os.environ.get("QTBOX_TESTS_REQUIRED") == "1":
            print(f"FAIL: no guest modules in {BLOBS} (QTBOX_TESTS_REQUIRED=1)")
            return 1
        print(f"SKIP: no guest modules in {BLOBS} (scripts/fetch-guest-kernel)")
        return SKIP
    with open(os.path.join(ROOT, "tests", "applets", "qt", "schema.json")) as f:
        schema = json.load(f)
    with tempfile.TemporaryDirectory(prefix="qtbox-json-contract-") as work:
        fake_vmm = os.path.join(work, "fake-vmm")
        with open(fake_vmm, "w") as f:
            f.write("#!/bin/sh\necho ready >&3\ntrap 'exit 0' TERM\nwhile :; do sleep 0.1; done\n")
        os.chmod(fake_vmm, 0o755)
        conf = os.path.join(work, "env.conf")
        with open(conf, "w") as f:
            f.write("hugepage_size:2\nmemory_mib:1024\ncpu_list:1\nmax_enclaves:2\n")
        env = dict(os.environ, QTBOX_RUN_DIR=os.path.join(work, "run"), QTBOX_PKI_DIR=os.path.join(work, "pki"),
                   QTBOX_ENV_CONF=conf, QTBOX_VMM=fake_vmm, QTBOX_BLOBS=BLOBS, SOURCE_DATE_EPOCH="0")
        rootfs = os.path.join(work, "root")
        os.makedirs(os.path.join(rootfs, "bin"))
        with open(os.path.join(rootfs, "bin", "app"), "w") as f:
            f.write("app\n")
        tiny = os.path.join(work, "tiny.bz")
        subprocess.run([sys.executable, os.path.join(ROOT, "tests", "applets", "vmm", "tiny-guest.py"), "hello", tiny],
                       check=True)
        eif = os.path.join(work, "app.eif")
        outputs = {}
        outputs["make-img"] = run("qt", "enclave", "make-img", "--rootfs", rootfs, "--eif", eif, "--kernel", tiny,
                                  "--modules", os.path.join(BLOBS, "modules"), "--cmd", "/bin/app", env=env)
        outputs["query-eif"] = run("qt", "enclave", "query-eif", "--eif", eif, env=env)
        start = run("qt", "enclave", "start", "--eif", eif, "--cpus", "1", "--mem", "256", "--debug-mode", env=env)
        lines = start.splitlines()
        if len(lines) != 2 or not lines[0].startswith("Started enclave with EnclaveID : 0, EnclaveCID : 4,"):
            raise AssertionError(f"start printed {start!r}")
        outputs["start"] = lines[1]
        outputs["query"] = run("qt", "enclave", "query", env=env)
        outputs["query-empty-id"] = run("qt", "enclave", "query", "--enclave-id", "7", env=env)
        stop = run("qt", "enclave", "stop", "--enclave-id", "0", env=env).splitlines()
        if stop[0] != "stop enclave 0 successfully":
            raise AssertionError(f"stop printed {stop!r}")
        outputs["stop"] = stop[1]
        outputs["query-empty"] = run("qt", "enclave", "query", env=env)
        outputs["env-show"] = run("qt", "env", "show", env=env)
        outputs["pki-init"] = run("qt", "pki", "init", env=env)
        outputs["pki-show"] = run("qt", "pki", "show", env=env)
        checked = 0
        for name, text in outputs.items():
            try:
                value = json.loads(text)
            except json.JSONDecodeError as error:
                raise AssertionError(f"{name}: not JSON ({error}): {text!r}")
            check(value, schema[name], name)
            checked += 1
        if json.loads(outputs["query-empty"]) != [] or json.loads(outputs["query-empty-id"]) != []:
            raise AssertionError("query with no enclave (or an unknown id) is not []")
        print(f"ok: {checked} outputs match tests/applets/qt/schema.json")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AssertionError as error:
        print(f"FAIL: {error}")
        sys.exit(1)
