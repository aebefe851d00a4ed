#!/usr/bin/env bash
# GPU benchmark run (tests on CUDA, every statistic timed, results in bench/results/).
# Uses the installed torch/triton as they are (GPU machines have no network): no pip here.
#   bench/gpu.sh [--quick] [--skip-tests] [--no-sweep] ...   (python3 bench/gpu.py --help)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET
exec python3 bench/gpu.py "$@"
