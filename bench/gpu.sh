#!/usr/bin/env bash
# The first GPU run, in one command of at most 7 minutes; every result line streams to the output
# folder as it is produced (run.log: everything; results.jsonl: one JSON record per result).
#   bench/gpu.sh [--smoke] [--deadline SECONDS] [--modes ieee,tf32x3,tf32,bf16] [--out DIR]
# Steps (each skipped once the deadline is near): plan (static time estimate), environment,
# parallel warm-up compiling every kernel variant into one cache (14 processes), S/M/E microbench
# per precision mode against per-mode baselines, the Triton correctness tests on CUDA, then the
# Restricted/Full pairs (bench/gpu.py) with what is left. --smoke: the same steps on CPU under
# TRITON_INTERPRET=1 at tiny shapes (checks the script; time it there).
# Uses the installed torch/triton as they are (GPU machines have no network): no pip here.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

DEADLINE=400
MODES=ieee,tf32x3,tf32,bf16
OUT_DIR="${OUT:-$PWD/bench/results/gpu_run}"
SMOKE=""
PROCESSES=14
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE="--smoke"; PROCESSES=2 ;;
    --deadline) DEADLINE="$2"; shift ;;
    --modes) MODES="$2"; shift ;;
    --out) OUT_DIR="$2"; shift ;;
    *) echo "bench/gpu.sh: unknown argument $1 (see the header of bench/gpu.sh)" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/run.log"
START=$(date +%s)
if [ -n "$SMOKE" ]; then export TRITON_INTERPRET=1; else unset TRITON_INTERPRET; fi
# One compile cache for the warm-up processes and every later step.
export TRITON_CACHE_DIR="${TRITON_CACHE_DIR:-${TMPDIR:-/tmp}/gromo_kernels_triton_cache}"
export GROMO_KERNELS_TRITON_AUTOTUNE=0

left() { echo $(( DEADLINE - ($(date +%s) - START) )); }
# step NAME RESERVE CMD...: run CMD with at most (time left − RESERVE) seconds, output streamed.
step() {
  local name="$1" reserve="$2"; shift 2
  local budget=$(( $(left) - reserve ))
  if [ "$budget" -le 5 ]; then
    echo "== $name skipped: deadline ($(left) s left)" | tee -a "$LOG"; return 0
  fi
  echo "== $name (budget ${budget} s, t=$(( $(date +%s) - START )) s)" | tee -a "$LOG"
  timeout --signal=INT --kill-after=10 "$budget" "$@" 2>&1 | tee -a "$LOG"
  echo "== $name done rc=${PIPESTATUS[0]} t=$(( $(date +%s) - START )) s" | tee -a "$LOG"
}

MICRO=(python3 bench/gpu_micro.py --out "$OUT_DIR" --modes "$MODES" $SMOKE)
step plan 0 "${MICRO[@]}" plan --processes "$PROCESSES"
step env 0 "${MICRO[@]}" env
step warmup 240 "${MICRO[@]}" warmup --processes "$PROCESSES"
step micro 180 "${MICRO[@]}" micro --deadline $(( $(left) - 200 ))
if [ -n "$SMOKE" ]; then
  step tests 20 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_triton_interpreter.py -k "linear_statistics and ieee"
  step pairs 0 python3 bench/gpu.py --smoke --quick --skip-tests --no-sweep --no-solves --out "$OUT_DIR"
else
  step tests 90 env GROMO_TEST_DEVICE=cuda python3 -m pytest -q -p no:cacheprovider --maxfail=20 \
    tests/kernels/test_triton_interpreter.py tests/kernels/test_statistics_triton.py
  step pairs 5 python3 bench/gpu.py --skip-tests --no-sweep --no-solves --out "$OUT_DIR"
fi
echo "== total $(( $(date +%s) - START )) s (deadline ${DEADLINE} s); results in $OUT_DIR" | tee -a "$LOG"
