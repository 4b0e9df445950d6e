#!/usr/bin/env bash
# Mutation testing of the core pure modules with mutmut 3: a benchmark of how well the unit tests
# pin the code down, NOT a CI gate (it runs for about an hour and its score moves with the
# choice of tests).
#
# Scope and tests come from [tool.mutmut] in pyproject.toml: gaussian.py (the KL and free-bits
# maths), losses.py, annealing.py, metrics/, data/augment.py, models/networks.py and
# models/vae.py are mutated (~2000 mutants; mutmut skips decorated functions, so
# models.vae.importance_log_weights, once iwae.py, uses a no_grad block), and each mutant runs
# only the selected fast unit tests that call the mutated function, fastest first, stopping at
# the first failure. networks.py and models/vae.py are mutated whole, but only networks.py's
# latent parts and vae.py's importance_log_weights are in scope: by default only the in-scope
# mutants are run (scripts/mutation_report.py --globs). The table at the end scores each module
# as killed / (killed + survived) and counts timeouts, mutants no test reaches and suspicious ones.
#
# Cost, one worker on a busy 2-core machine: ~2 min of set-up (copy, mutant generation, one
# traced pass of the selected tests), then ~0.15 s per mutant whose tests are fast (annealing.py:
# 335 mutants in 50 s) but up to 15-35 s per surviving mutant of losses.py and networks.py, whose
# tests build every model: about 30 min in all if a quarter of the mutants survive, at most
# ~1.5 h if all did (2026-11-29, 5% survivors: 693 s for the mutant phase; per-module scores
# and accepted survivors in docs/mutation.md). MUTMUT_CHILDREN=2 roughly halves the mutant phase
# on an otherwise idle machine.
# mutmut copies the project into mutants/ (git-ignored) and keeps its state there; the mutants
# are named on the command line, so every run retests all of them. rm -rf mutants/ to start over.
# Do not use `mutmut print-time-estimates` on that state: in mutmut 3.8.1 it drops the
# test-to-function map from mutants/mutmut-stats.json, and the next run then finds no tests.
#
# Usage: scripts/mutation.sh [MUTANT_GLOB ...]   (default: every in-scope mutant)
#   MUTMUT_CHILDREN=2 scripts/mutation.sh                   # two workers
#   scripts/mutation.sh 'facemask_vae.annealing.*'          # one module (all are still generated)
#   MUTATION_SURVIVORS=1 scripts/mutation.sh                # also list the surviving mutants
#   PYTHON=/path/to/venv/bin/python scripts/mutation.sh     # another environment
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
# the mutmut next to that interpreter (mutmut warns against python -m mutmut)
MUTMUT=${MUTMUT:-$(dirname "$(command -v "$PY")")/mutmut}
# one thread per worker: torch would otherwise start a thread per core in every forked test run
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}

globs=("$@")
if [[ ${#globs[@]} -eq 0 ]]; then
    mapfile -t globs < <("$PY" scripts/mutation_report.py --globs)
fi

start=$(date +%s)
"$MUTMUT" run --max-children "${MUTMUT_CHILDREN:-1}" "${globs[@]}"
echo "mutmut run took $(($(date +%s) - start)) s"

report_args=()
if [[ -n "${MUTATION_SURVIVORS:-}" ]]; then
    report_args+=(--survivors)
fi
"$PY" scripts/mutation_report.py "${report_args[@]}"
echo "inspect a mutant: $MUTMUT show <name>; every result: $MUTMUT results --all true"
