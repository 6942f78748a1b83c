#!/bin/sh
# Runs one scenario script and makes sure it leaves exactly one RESULT line.
scenario=$1
. "$SCENARIOS/lib.sh"
echo "== scenario $scenario"
( . "$SCENARIOS/$scenario.sh" ) >"$TMPDIR_SCENARIO/result" 2>&1
status=$?
cat "$TMPDIR_SCENARIO/result"
if ! grep -q "^RESULT $scenario " "$TMPDIR_SCENARIO/result"; then
    echo "RESULT $scenario FAIL the scenario script ended ($status) without a verdict"
fi
