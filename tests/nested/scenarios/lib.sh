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
