# Helpers for the scenario scripts (POSIX sh; busybox in the parent).
# Each scenario prints exactly one line: RESULT <name> PASS|FAIL|SKIP <detail>.
TMPDIR_SCENARIO=$(mktemp -d "${TMPDIR:-/tmp}/scenario.XXXXXX")

pass() { echo "RESULT $scenario PASS $*"; exit 0; }
fail() { echo "RESULT $scenario FAIL $*"; exit 1; }
skip() { echo "RESULT $scenario SKIP $*"; exit 0; }

# Seconds since boot, with 10 ms resolution (busybox date has no %N).
now() { read -r up _ </proc/uptime; echo "$up"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# VMM_LIMIT: seconds a vmm may run before watch_vmm calls it hung.
VMM_LIMIT=${VMM_LIMIT:-120}

# describe_hang PID: what a process that does not end is doing, so that a
# hang names itself in the log: each thread's state, where it waits in the
# kernel, and its kernel stack.
describe_hang() {
    echo "-- pid $1 still running; its threads:"
    for task in /proc/"$1"/task/*; do
        [ -d "$task" ] || continue
        echo "   thread ${task##*/}: $(cut -d' ' -f3 "$task/stat" 2>/dev/null) wchan=$(cat "$task/wchan" 2>/dev/null)"
        sed 's/^/      /' "$task/stack" 2>/dev/null | head -n 12
    done
}

# watch_vmm PID: waits for the background vmm PID; after VMM_LIMIT seconds
# it describes the hang, sends SIGTERM, and after 10 s more SIGKILL. Sets
# rc (as wait does) and hung=yes when it had to step in.
watch_vmm() {
    watched=$1
    hung=""
    waited=0
    while kill -0 "$watched" 2>/dev/null && [ "$waited" -lt $((VMM_LIMIT * 10)) ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -0 "$watched" 2>/dev/null; then
        hung=yes
        echo "-- vmm (pid $watched) still running after ${VMM_LIMIT}s at $(now)s of parent uptime"
        describe_hang "$watched"
        kill -TERM "$watched" 2>/dev/null
        waited=0
        while kill -0 "$watched" 2>/dev/null && [ "$waited" -lt 100 ]; do
            sleep 0.1
            waited=$((waited + 1))
        done
        if kill -0 "$watched" 2>/dev/null; then
            echo "-- vmm ignored SIGTERM for 10 s"
            describe_hang "$watched"
            kill -KILL "$watched" 2>/dev/null
        fi
    fi
    wait "$watched"
    rc=$?
}

# run_vmm NAME ARGS...: runs vmm under watch_vmm, stdout to $out, stderr to
# $err, exit status in $rc, wall time in $took.
run_vmm() {
    name=$1
    shift
    out="$TMPDIR_SCENARIO/$name.out"
    err="$TMPDIR_SCENARIO/$name.err"
    start=$(now)
    echo "-- vmm $* (started at ${start}s)"
    vmm "$@" >"$out" 2>"$err" </dev/null &
    watch_vmm $!
    took=$(elapsed "$start" "$(now)")
    echo "-- vmm -> $rc in ${took}s${hung:+ (hung)}"
    echo "-- stdout:"; cat "$out"
    echo "-- stderr:"; cat "$err"
}

has() { grep -q -- "$2" "$1"; }

# vmm and qt-proxy started as root switch to the system account qtbox
# (vmm(1), qt-proxy(1) --user), which the simulated parent has (nested.py
# PARENT_PASSWD); on a host (--direct) only where scripts/setup made it.
# SERVICE_UID and SERVICE_GID are its ids, empty when they stay root here.
SERVICE_UID=
SERVICE_GID=
if [ "$(id -u)" = 0 ]; then
    SERVICE_UID=$(awk -F: '$1 == "qtbox" && NF == 7 { print $3; exit }' /etc/passwd 2>/dev/null)
    SERVICE_GID=$(awk -F: '$1 == "qtbox" && NF == 7 { print $4; exit }' /etc/passwd 2>/dev/null)
fi
# The scenarios' own listeners in $QTBOX_RUN_DIR/vsock are born in the
# account's group, mode 0660, as a parent program's must be for vmm to
# connect (tests/nested/tools/vsock_tool.c).
[ -z "$SERVICE_GID" ] || export VSOCK_TOOL_GROUP="$SERVICE_GID"

# ids_of WHAT UID-LINE GID-LINE SECCOMP: "ok ..." when a process's
# /proc/PID/status lines (their values) show the service account's uids and
# gids (real, effective, saved, filesystem) and seccomp mode 2; else what
# differs. In the simulated parent the account must exist.
ids_of() {
    what=$1
    uid_line=$(echo "$2" | tr -s '[:space:]' ' ' | sed 's/^ //; s/ $//')
    gid_line=$(echo "$3" | tr -s '[:space:]' ' ' | sed 's/^ //; s/ $//')
    seccomp=$(echo "$4" | tr -d '[:space:]')
    if [ -z "$SERVICE_UID" ]; then
        if [ "$DATA" = /data ]; then
            echo "the simulated parent has no qtbox account in /etc/passwd"
        else
            echo "ok: $what not checked (no qtbox account on this host, or not root)"
        fi
        return
    fi
    want_uid="$SERVICE_UID $SERVICE_UID $SERVICE_UID $SERVICE_UID"
    want_gid="$SERVICE_GID $SERVICE_GID $SERVICE_GID $SERVICE_GID"
    if [ "$uid_line" != "$want_uid" ] || [ "$gid_line" != "$want_gid" ] || [ "$seccomp" != 2 ]; then
        echo "$what runs with Uid '$uid_line', Gid '$gid_line', Seccomp '$seccomp'; expected qtbox's $SERVICE_UID/$SERVICE_GID and seccomp 2"
        return
    fi
    echo "ok: $what runs as qtbox ($SERVICE_UID:$SERVICE_GID) under seccomp (mode 2)"
}

# service_ids WHAT PID: ids_of a live process, read from /proc/PID/status.
service_ids() {
    status_file="/proc/$2/status"
    if ! [ -r "$status_file" ]; then
        echo "$1 (pid $2) is gone: its ids cannot be read"
        return
    fi
    ids_of "$1" "$(sed -n 's/^Uid://p' "$status_file")" "$(sed -n 's/^Gid://p' "$status_file")" \
        "$(sed -n 's/^Seccomp://p' "$status_file")"
}

# peer_ids WHAT LOG: ids_of the process that connected to a vsock-tool
# listener, from the "peer-status" lines it logged while the connection was
# open (vsock_tool.c).
peer_ids() {
    if ! grep -q "^peer-status Uid:" "$2" 2>/dev/null; then
        echo "$1: no peer-status lines in $2: $(head -n 3 "$2" 2>/dev/null | tr '\n' ' ')"
        return
    fi
    ids_of "$1" "$(sed -n 's/^peer-status Uid://p' "$2")" "$(sed -n 's/^peer-status Gid://p' "$2")" \
        "$(sed -n 's/^peer-status Seccomp://p' "$2")"
}

# ids_ok VERDICT: whether ids_of said "ok".
ids_ok() { case "$1" in ok*) return 0 ;; esac; return 1; }
