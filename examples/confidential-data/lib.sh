# Shared by the confidential-data example's scripts (POSIX sh; busybox too):
# one line per step, ✓ or ✗, what happened, and how long it took, which
# scripts/demo gathers into its table of step timings.
#
#   step_start              starts the clock of the next step
#   step_ok N TEXT...       ✓ N. TEXT  (S s)
#   step_fail N TEXT...     ✗ N. TEXT  (S s)

uptime_s() { read -r up _ </proc/uptime; echo "$up"; }
step_start() { STEP_T0=$(uptime_s); }
step_line() {
    mark=$1 number=$2
    shift 2
    printf '%s %s. %s  (%s s)\n' "$mark" "$number" "$*" \
        "$(awk -v a="${STEP_T0:-0}" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }')"
}
step_ok() { step_line "✓" "$@"; }
step_fail() { step_line "✗" "$@"; }
