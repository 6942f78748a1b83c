#!/bin/sh
# Runs one scenario script and makes sure it leaves exactly one RESULT line.
# Its output goes to the console as it happens (a scenario that hangs shows
# how far it got) and into a file, for the verdict check.
scenario=$1
. "$SCENARIOS/lib.sh"
echo "== scenario $scenario at $(now)s"
( . "$SCENARIOS/$scenario.sh" ) 2>&1 | tee "$TMPDIR_SCENARIO/result"
if ! grep -q "^RESULT $scenario " "$TMPDIR_SCENARIO/result"; then
    echo "RESULT $scenario FAIL the scenario script ended without a verdict"
fi
