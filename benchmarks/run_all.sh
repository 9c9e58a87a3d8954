#!/bin/sh
# Runs every benchmark and says which missed a goal: `benchmarks/run_all.sh [--quick]`.
# Each prints its figures and `goal <name>: <value> (want <= or >= <x>)` lines, and exits 1 when
# a goal is missed; this script runs them all regardless and exits 1 if any did.
# --quick: the short forms (each under a minute on a 2-core machine); without: the full forms.
cd "$(dirname "$0")/.." || exit 2
PYTHON="${PYTHON:-python}"
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
    echo "== $bench: $(( $(date +%s) - started )) s"
    echo
done
if [ "$status" -ne 0 ]; then
    echo "goals missed in:$missed"
else
    echo "every goal met"
fi
exit "$status"
