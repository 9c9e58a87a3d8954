#!/bin/sh
# Runs every benchmark and says which missed a goal: `benchmarks/run_all.sh [--quick]`.
# Each prints its figures and `goal <name>: <value> (want <= or >= <x>)` lines, and exits 1 when
# a goal is missed; this script runs them all regardless and exits 1 if any did.
# --quick: the short forms, each of which must finish within QUICK_SECONDS (60; a goal of its
# own, checked here on the wall clock, so a machine busy with other work can miss it).
cd "$(dirname "$0")/.." || exit 2
PYTHON="${PYTHON:-python}"
QUICK_SECONDS="${QUICK_SECONDS:-60}"
quick=0
for arg in "$@"; do
    [ "$arg" = "--quick" ] && quick=1
done
status=0
missed=""
for bench in bench_catalog_wizard bench_concurrency bench_catalog_memory bench_tracker \
        bench_commands bench_mass_order; do
    echo "== $bench $*"
    started=$(date +%s)
    if ! "$PYTHON" "benchmarks/$bench.py" "$@"; then
        status=1
        missed="$missed $bench"
    fi
    took=$(( $(date +%s) - started ))
    echo "== $bench: $took s"
    if [ "$quick" -eq 1 ]; then
        echo "goal quick_seconds: $took (want <= $QUICK_SECONDS)"
        if [ "$took" -gt "$QUICK_SECONDS" ]; then
            status=1
            missed="$missed $bench(time)"
        fi
    fi
    echo
done
if [ "$status" -ne 0 ]; then
    echo "goals missed in:$missed"
else
    echo "every goal met"
fi
exit "$status"
