#!/bin/sh
# Steps 6-10 of the confidential-data workflow: what the parent instance's
# admin runs, once prepare.sh has made the PKI, the images and the policy.
#   6. the object store (busybox httpd, static files plus put.cgi for
#      results) and the key-release service (busybox httpd around
#      nonce.cgi and release.cgi, i.e. attest-verify --policy --seal), both
#      on loopback only;
#   7. qt-proxy (vsock ports 8001 and 8002 to those two, nothing else) and
#      the enclave, a production one, with `qt enclave start`;
#   8. the enclave's report: it fetched, attested, got the key, decrypted,
#      and says only what redaction leaves;
#   9. the same image in debug mode, and the rebuilt image with one changed
#      byte: the key-release service refuses both;
#  10. everything stopped: no enclave, no process, no socket left.
# Each step prints one line with ✓ or ✗ (lib.sh); the exit status is 0 when
# every step is ✓.
#
# Usage: parent.sh DIR   (DIR: prepare.sh's output; the run's state goes
#                         under DIR/run and is removed at the end)
# Environment: QTBOX (default: qtbox on PATH). The parent needs /dev/kvm,
# busybox (httpd) and /etc/machine-id (the enclaves' instance id, PCR4).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=$(cd "$1" && pwd)
. "$HERE/lib.sh"
QTBOX=${QTBOX:-$(command -v qtbox)}
[ -x "$QTBOX" ] || { echo "parent.sh: no qtbox binary (set QTBOX)" >&2; exit 2; }

mkdir -p "$DIR/bin"
for name in qt qt-proxy attest-verify; do ln -sf "$QTBOX" "$DIR/bin/$name"; done
export PATH="$DIR/bin:$PATH"
# A state directory of its own: this host's enclaves, if any, stay apart.
export QTBOX_RUN_DIR="$DIR/run" QTBOX_PKI_DIR="$DIR/pki"
export KEY_RELEASE_DIR="$DIR/key-release" OBJECT_STORE_DIR="$DIR/object-store"
rm -rf "$QTBOX_RUN_DIR" "$DIR/kr-www" "$DIR/documents"
mkdir -p "$QTBOX_RUN_DIR" "$DIR/documents" "$KEY_RELEASE_DIR/nonces" "$OBJECT_STORE_DIR/results" \
    "$OBJECT_STORE_DIR/cgi-bin" "$DIR/kr-www/cgi-bin"
chmod 700 "$KEY_RELEASE_DIR"
cp "$HERE/object-store/put.cgi" "$OBJECT_STORE_DIR/cgi-bin/put"
cp "$HERE/key-release/nonce.cgi" "$DIR/kr-www/cgi-bin/nonce"
cp "$HERE/key-release/release.cgi" "$DIR/kr-www/cgi-bin/release"
: >"$KEY_RELEASE_DIR/log"

failed=0
pids=""
cleanup() {
    qt enclave stop --all >/dev/null 2>&1
    for pid in $pids; do kill "$pid" 2>/dev/null; done
    for pid in $pids; do wait "$pid" 2>/dev/null; done
    pids=""
}
trap 'cleanup; exit 1' INT TERM

# wait_until SECONDS CMD...: retries CMD every 0.2 s.
wait_until() {
    limit=$(($1 * 5))
    shift
    tries=0
    until "$@" >/dev/null 2>&1; do
        tries=$((tries + 1))
        [ "$tries" -lt "$limit" ] || return 1
        sleep 0.2
    done
}
# run_enclave LABEL EIF [--debug-mode]: starts it, waits for the app's
# report in the object store, keeps the document it presented, stops it.
# Sets $report (the report's path, empty when none came) and $started.
run_enclave() {
    label=$1 eif=$2
    shift 2
    rm -f "$OBJECT_STORE_DIR/results/report" "$KEY_RELEASE_DIR/last.doc"
    report="" started=no
    if ! qt enclave start --eif "$eif" --cpus 2 --mem 512 --cid 16 "$@" >"$DIR/start.out" 2>"$DIR/start.err"; then
        echo "    qt enclave start: $(head -n 1 "$DIR/start.err")"
        return
    fi
    started=yes
    id=$(sed -n 's/.*"EnclaveID":\([0-9]*\).*/\1/p' "$DIR/start.out" | head -n 1)
    echo "    $(head -n 1 "$DIR/start.out")"
    # The report, or the enclave's end (an app that died: its exit record).
    if wait_until 240 report_or_end; then
        [ -f "$OBJECT_STORE_DIR/results/report" ] && report="$OBJECT_STORE_DIR/results/report"
    fi
    [ -n "$report" ] || echo "    no report from the enclave; its state: $(qt enclave query 2>&1 | tr '\n' ' ')"
    [ -f "$KEY_RELEASE_DIR/last.doc" ] && cp "$KEY_RELEASE_DIR/last.doc" "$DIR/documents/$label.doc"
    if [ "$label" = production ]; then
        # A production enclave's console is closed, to its own parent too.
        qt enclave console --enclave-id "$id" >/dev/null 2>"$DIR/console.err"
        echo "    qt enclave console -> $? ($(head -n 1 "$DIR/console.err")): the report is all the parent sees"
    fi
    qt enclave stop --enclave-id "$id" >/dev/null 2>"$DIR/stop.err" ||
        echo "    qt enclave stop: $(head -n 1 "$DIR/stop.err")"
}
report_or_end() { [ -f "$OBJECT_STORE_DIR/results/report" ] || [ "$(qt enclave query 2>/dev/null)" = "[]" ]; }
show_report() { [ -n "$report" ] && sed 's/^/    │ /' "$report"; }
refused_with() { [ -n "$report" ] && grep -q "key release refused" "$report" && tail -n 1 "$KEY_RELEASE_DIR/log" | grep -q "exit $1,"; }

# 6.
step_start
busybox httpd -f -p 127.0.0.1:18081 -h "$OBJECT_STORE_DIR" &
pids="$pids $!"
busybox httpd -f -p 127.0.0.1:18082 -h "$DIR/kr-www" &
pids="$pids $!"
if wait_until 10 busybox wget -q -O /dev/null http://127.0.0.1:18081/records/card-0001.sealed &&
    wait_until 10 busybox wget -q -O /dev/null http://127.0.0.1:18082/cgi-bin/nonce; then
    step_ok 6 "object store on 127.0.0.1:18081 (the sealed record), key-release service on 127.0.0.1:18082"
else
    step_fail 6 "the object store or the key-release service does not answer"
    cleanup
    exit 1
fi
# That probe's nonce is never used; the service forgets it.
rm -f "$KEY_RELEASE_DIR"/nonces/*

# 7 and 8.
step_start
qt-proxy --config "$HERE/app/proxy.toml" >"$DIR/qt-proxy.log" 2>&1 &
pids="$pids $!"
wait_until 10 test -S "$QTBOX_RUN_DIR/vsock/3_8002" || echo "    qt-proxy did not listen: $(cat "$DIR/qt-proxy.log")"
run_enclave production "$DIR/app.eif"
if [ "$started" = yes ]; then
    step_ok 7 "qt-proxy (vsock 8001, 8002 -> loopback) and the production enclave started"
else
    step_fail 7 "the production enclave did not start"
    failed=1
fi
step_start
show_report
grep '✓ released' "$KEY_RELEASE_DIR/log" | tail -n 1 | sed 's/^/    /'
if [ -n "$report" ] && grep -q "✓ decrypted" "$report" && grep -q '\*\*\*\* \*\*\*\* \*\*\*\* 1111' "$report" &&
    ! grep -q "4111 1111" "$report"; then
    step_ok 8 "the enclave fetched, attested, got the key and decrypted; the parent got only the redacted record"
else
    step_fail 8 "the enclave did not decrypt the record (its report is above)"
    failed=1
fi

# 9.
# refused STEP LABEL EIF WHAT [START_OPTION]: the enclave must
# get no key: its report says so, and the service refused its document
# for a PCR (exit 14).
refused() {
    number=$1 what=$4
    step_start
    run_enclave "$2" "$3" ${5:+"$5"}
    show_report | grep "key release"
    tail -n 1 "$KEY_RELEASE_DIR/log" | sed 's/^/    /'
    if refused_with 14; then
        step_ok "$number" "$what: refused by the policy"
    else
        step_fail "$number" "$what: not refused with exit 14"
        failed=1
    fi
}
refused 9a debug "$DIR/app.eif" "the same image in debug mode (PCR0 is zeros)" --debug-mode
refused 9b tampered "$DIR/tampered.eif" "the rebuilt image with one changed byte (PCR0 differs)"

# 10.
step_start
cleanup
left=""
[ "$(qt enclave query 2>/dev/null)" = "[]" ] || left="$left an enclave;"
sockets=$(find "$QTBOX_RUN_DIR" -type s 2>/dev/null)
[ -z "$sockets" ] || left="$left sockets: $sockets;"
# Any process of this run names its directory or its qt-proxy rules.
for proc in /proc/[0-9]*; do
    pid=${proc#/proc/}
    [ "$pid" = $$ ] && continue
    line=$(tr '\0' ' ' <"$proc/cmdline" 2>/dev/null) || continue
    case "$line" in
        *"$DIR"*|*"$HERE/app/proxy.toml"*) left="$left pid $pid ($line);" ;;
    esac
done
rm -rf "$QTBOX_RUN_DIR" "$DIR/kr-www"
if [ -z "$left" ] && [ ! -e "$QTBOX_RUN_DIR" ]; then
    step_ok 10 "stopped: no enclave, process or socket left; the run's state directory removed"
else
    step_fail 10 "left behind:$left"
    failed=1
fi
exit "$failed"
