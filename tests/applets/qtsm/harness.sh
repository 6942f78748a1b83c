# Shared by tests/applets/qtsm*/*.test (sourced after lib.sh): a real PKI
# (`qt pki init`), the test-only QTSM backend (tests/qtsm/qtsm-test-backend)
# on a Unix socket, and qtsm-server in front of it, so that qtsm, qtsm-server
# and libqtsm run as they would in an enclave, without a VM.
#
#   start_backend [OPTIONS...]   backend options (--signature-order, --clock-file...)
#   start_server  [OPTIONS...]   qtsm-server in front of it; exports QTSM_SOCKET
#   stop_all                     TERM both (the EXIT trap does it too)

: "${QTSM_TEST_BACKEND:?QTSM_TEST_BACKEND must point at tests/qtsm/qtsm-test-backend}"
export QTBOX_PKI_DIR="$WORK/pki"
BACKEND_PID=
SERVER_PID=
trap 'stop_all; rm -rf "$WORK"' EXIT

stop_all() {
    for pid in $SERVER_PID $BACKEND_PID; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    SERVER_PID=
    BACKEND_PID=
}

# wait_for CMD...: retries CMD for up to 10 s.
wait_for() {
    tries=0
    until "$@" >/dev/null 2>&1; do
        tries=$((tries + 1))
        [ "$tries" -lt 100 ] || fail "timed out waiting for: $*"
        sleep 0.1
    done
}

start_backend() {
    [ -f "$QTBOX_PKI_DIR/root.pem" ] || qt pki init >/dev/null
    rm -f "$WORK/backend.ready"
    "$QTSM_TEST_BACKEND" serve --socket "$WORK/backend.sock" --pki "$QTBOX_PKI_DIR" \
        --ready-file "$WORK/backend.ready" "$@" 2>>"$WORK/backend.log" &
    BACKEND_PID=$!
    wait_for test -f "$WORK/backend.ready"
}

start_server() {
    : >"$WORK/server.log"
    qtsm-server --device "unix:$WORK/backend.sock" --socket "$WORK/qtsm.sock" "$@" 2>>"$WORK/server.log" &
    SERVER_PID=$!
    wait_for grep -q "serving" "$WORK/server.log"
    QTSM_SOCKET="$WORK/qtsm.sock"
    export QTSM_SOCKET
}

# verify DOC [attest-verify options...]: verifies against the PKI root.
verify() {
    doc=$1
    shift
    attest-verify "$doc" --root "$QTBOX_PKI_DIR/root.pem" "$@"
}
