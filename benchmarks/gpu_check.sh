#!/usr/bin/env bash
# One GPU in under 10 minutes: the gpu benchmark suite's attack steps (IG gradient mode,
# IG fedavg mode, DLF, DLG) and two whole FedAvg rounds (every client of a 100-client round;
# the reference's 10-client round) at precision f32, tf32 and bf16, N = 1 and 64 restarts,
# into one JSON.
#
#   benchmarks/gpu_check.sh [--tiny] [--out=FILE.json]      (or GPU_CHECK_TINY=1)
#
# --tiny: tiny shapes on whatever backend is there (CPU: a minute or two), N = 1 only;
# tests/test_gpu_check.py runs it. Run from the repository root with the project's python
# ($PYTHON, default python3). Each part is bounded by `timeout` (GPU_CHECK_BUDGET seconds in
# all, default 570), and the JSON is rewritten after each entry, so a slow part still leaves
# the rows measured before it. Exit status: benchmarks.run's (124: the budget ran out).
set -euo pipefail

tiny="${GPU_CHECK_TINY:-0}"
out="gpu_check.json"
for arg in "$@"; do
  case "$arg" in
    --tiny) tiny=1 ;;
    --out=*) out="${arg#--out=}" ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$arg' (use --tiny, --out=FILE.json)" >&2; exit 2 ;;
  esac
done
py="${PYTHON:-python3}"
budget="${GPU_CHECK_BUDGET:-570}"
if [[ "$tiny" == 1 ]]; then
  args=(--quick --suite=cpu --only=ig,ig_fedavg,fedavg --ns=1)
else
  args=(--suite=gpu --only=ig,ig_fedavg,dlf_cnn3,dlg_eval,fedavg --ns=1,64 --fedavg_grid=check
        --repeats=3)
fi
"$py" -c 'import jax; print("gpu_check: jax", jax.__version__, jax.devices())' >&2
exec timeout -k 10 "$budget" "$py" -m benchmarks.run "${args[@]}" \
  --precision=f32,tf32,bf16 --out="$out"
