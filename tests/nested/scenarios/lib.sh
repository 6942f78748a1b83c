# Helpers for the scenario scripts (POSIX sh; busybox in the parent).
# Each scenario prints exactly one line: RESULT <name> PASS|FAIL|SKIP <detail>.
TMPDIR_SCENARIO=$(mktemp -d "${TMPDIR:-/tmp}/scenario.XXXXXX")

pass() { echo "RESULT $scenario PASS $*"; exit 0; }
fail() { echo "RESULT $scenario FAIL $*"; exit 1; }
skip() { echo "RESULT $scenario SKIP $*"; exit 0; }

# Seconds since boot, with 10 ms resolution (busybox date has no %N).
now() { read -r up _ </proc/uptime; echo "$up"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# run_vmm NAME ARGS...: runs vmm with a 120 s guard, stdout to $out,
# stderr to $err, exit status in $rc, wall time in $took.
run_vmm() {
    name=$1
    shift
    out="$TMPDIR_SCENARIO/$name.out"
    err="$TMPDIR_SCENARIO/$name.err"
    start=$(now)
    timeout 120 vmm "$@" >"$out" 2>"$err" </dev/null
    rc=$?
    took=$(elapsed "$start" "$(now)")
    echo "-- vmm $* -> $rc in ${took}s"
    echo "-- stdout:"; cat "$out"
    echo "-- stderr:"; cat "$err"
}

has() { grep -q -- "$2" "$1"; }
