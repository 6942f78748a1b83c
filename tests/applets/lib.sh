# Shared helpers for the golden CLI tests (tests/applets/*/*.test).
#
# A test is a POSIX shell script run by meson with QTBOX pointing at the built
# binary. Sourcing this file gives it:
#   - $WORK, a private temporary directory removed on exit;
#   - $BIN, where `qtbox --install -s` made the applet links, first in PATH,
#     so the test runs applets by name exactly as a user would;
#   - check helpers that print what was expected and what happened.
# A test that cannot run here (no KVM, no QEMU...) calls skip "reason" (77).
set -eu

: "${QTBOX:?QTBOX must point at the built qtbox binary}"
: "${QTBOX_SOURCE_ROOT:?}"
DATA="$QTBOX_SOURCE_ROOT/tests/data"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/qtbox-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
BIN="$WORK/bin"
mkdir -p "$BIN"
"$QTBOX" --install -s "$BIN"
PATH="$BIN:$PATH"
export PATH
# Sockets and state of enclaves and proxies started by the test stay in it.
QTBOX_RUN_DIR="$WORK/run"
export QTBOX_RUN_DIR
# So is the local attestation PKI (none until a test runs `qt pki init`).
QTBOX_PKI_DIR="$WORK/pki"
export QTBOX_PKI_DIR

# vmm and qt-proxy started as root switch to the system account qtbox when
# /etc/passwd has it (vmm(1), qt-proxy(1) --user; scripts/setup creates
# it): SERVICE_UID and SERVICE_GID are its ids then, empty when they stay
# root here. What they reach after the switch (listeners, files read again)
# is in $WORK, which then belongs to the account's group, as a deployment's
# directories would (mode 0750: nobody else).
SERVICE_UID=
SERVICE_GID=
if [ "$(id -u)" = 0 ]; then
    SERVICE_UID=$(awk -F: '$1 == "qtbox" && NF == 7 { print $3; exit }' /etc/passwd)
    SERVICE_GID=$(awk -F: '$1 == "qtbox" && NF == 7 { print $4; exit }' /etc/passwd)
fi
# The line vmm logs once the enclave starts when it switched (none when
# root stays root).
VMM_SWITCH_LINE=
if [ -n "$SERVICE_UID" ]; then
    chgrp "$SERVICE_GID" "$WORK"
    chmod 0750 "$WORK"
    VMM_SWITCH_LINE="vmm: running as user qtbox (uid $SERVICE_UID, gid $SERVICE_GID)"
fi

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# skip REASON: something the test needs is not installed. scripts/test sets
# QTBOX_TESTS_REQUIRED=1, which makes that a failure: on CI a missing
# install step must not pass unnoticed.
skip() {
    if [ "${QTBOX_TESTS_REQUIRED:-}" = 1 ]; then
        echo "FAIL: cannot run (QTBOX_TESTS_REQUIRED=1): $*"
        exit 1
    fi
    echo "SKIP: $*"
    exit 77
}

# skip_unsupported REASON: the host lacks a capability no package provides
# (for example a usable /dev/kvm); a skip even under QTBOX_TESTS_REQUIRED.
skip_unsupported() {
    echo "SKIP: $*"
    exit 77
}

# expect_exit CODE CMD...: runs CMD, keeps stdout in $WORK/out and stderr in
# $WORK/err, and fails unless it exits with CODE.
expect_exit() {
    want=$1
    shift
    set +e
    "$@" >"$WORK/out" 2>"$WORK/err"
    got=$?
    set -e
    if [ "$got" -ne "$want" ]; then
        echo "--- stdout:" >&2
        head -c 2000 "$WORK/out" >&2
        echo "--- stderr:" >&2
        head -c 2000 "$WORK/err" >&2
        fail "'$*' exited $got, expected $want"
    fi
}

# expect_stderr_line REGEX: the captured stderr has exactly one line, and it
# matches REGEX (docs/FORMATS.md §10: one clear line per error). vmm's
# $VMM_SWITCH_LINE, when it switched to the service account as expected,
# is not counted (vmm-sandbox checks it).
expect_stderr_line() {
    if [ -n "$VMM_SWITCH_LINE" ]; then
        grep -vxF -- "$VMM_SWITCH_LINE" "$WORK/err" >"$WORK/err.counted" || true
    else
        cp "$WORK/err" "$WORK/err.counted"
    fi
    lines=$(wc -l <"$WORK/err.counted")
    [ "$lines" -eq 1 ] || { cat "$WORK/err" >&2; fail "expected one stderr line, got $lines"; }
    grep -Eq -- "$1" "$WORK/err.counted" || { cat "$WORK/err" >&2; fail "stderr does not match /$1/"; }
}

# expect_match FILE REGEX
expect_match() {
    grep -Eq -- "$2" "$1" || { head -c 2000 "$1" >&2; fail "$1 does not match /$2/"; }
}

# json_get FILE EXPR: prints a value from a JSON file, e.g. json_get "$WORK/out" '["pcrs"]["0"]'
json_get() {
    python3 -c 'import json,sys; v=eval("json.load(open(sys.argv[1]))"+sys.argv[2]); print(v if not isinstance(v,(dict,list)) else json.dumps(v))' "$1" "$2"
}
