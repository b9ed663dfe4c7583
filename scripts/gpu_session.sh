#!/usr/bin/env bash
# One GPU session end to end: resume the training state in weights/training, train for
# BUDGET seconds with the CUDA recipe, then the GPU inference benchmark and the CUDA tests.
# What must come back goes under $OUT (at most 8 files): checkpoint.pt, train_log.jsonl,
# ema.safetensors, train.log, bench_gpu.json, bench_gpu.log, pytest_gpu.log, gpu.txt.
#
#   OUT=DIR [CHECKS=0] scripts/gpu_session.sh BUDGET_S [cuda|cpu]
#
# Timing on the H200 (2026-12-04): ~80 s before training runs at speed (cuDNN autotuning,
# first batches), then BUDGET_S, then ~150 s of bench_gpu.py and ~80 s of pytest. One
# call may run 600 s: BUDGET_S 270 with the checks, 480 with CHECKS=0 (training only).
#
# Photos: runs/gpu_data from scripts/pack_gpu_data.py (carry it). Rehearse on the CPU
# with a tiny budget first:  OUT=/tmp/gpu scripts/gpu_session.sh 60 cpu
# Back here: copy checkpoint.pt and train_log.jsonl into weights/training/ and resume with
# the CPU recipe given explicitly (the state now stores the CUDA one and runs/gpu_data):
#   rbqe train --out weights/training --data ../shared/datasets/train \
#       --val ../shared/datasets/val/bsds500_val --batch 8 --patch 128 --device cpu ...
set -uo pipefail
budget=${1:?usage: OUT=DIR scripts/gpu_session.sh BUDGET_S [cuda|cpu]}
device=${2:-cuda}
out=${OUT:?set OUT to the folder that comes back}
data=${DATA:-runs/gpu_data}
py=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
rbqe() { "$py" -m rbqe.cli "$@"; }

[ -d "$data/train" ] || { echo "no $data/train: run scripts/pack_gpu_data.py and carry it" >&2; exit 2; }
{ nvidia-smi || true; "$py" -c 'import torch; print(torch.__version__, torch.cuda.is_available())'; } \
    > "$out/gpu.txt" 2>&1
# Training writes its state here every minute, one folder down, so a run stopped at the
# call's limit still brings back its last checkpoint.
state="$out/training"
mkdir -p "$state"
cp weights/training/checkpoint.pt weights/training/train_log.jsonl "$state/"

if [ "$device" = cpu ]; then  # a rehearsal: the stored batch, one batch-maker
    run_args=(--workers 1 --val-every 20)
else  # issue 10's CUDA levers: large batch and patches, bf16, many batch-making processes
    run_args=(--batch 256 --patch 128 --bf16 --workers 14 --val-every 500)
fi
# GPU load every 5 s beside training: whether the batch-makers keep the GPU busy.
if command -v nvidia-smi > /dev/null; then
    nvidia-smi dmon -s um -d 5 >> "$out/gpu.txt" 2>&1 &
    dmon=$!
fi
rbqe train --out "$state" --device "$device" --data "$data/train" --val "$data/val" \
    --time-budget "$budget" --checkpoint-every 60 "${run_args[@]}" 2>&1 | tee "$out/train.log"
[ -n "${dmon:-}" ] && kill "$dmon"
# Flatten to the files that come back; the slow EMA and last weights are in the checkpoint.
mv "$state/checkpoint.pt" "$state/train_log.jsonl" "$state/ema.safetensors" "$out/" && rm -rf "$state"

if [ "${CHECKS:-1}" = 0 ]; then ls -la "$out"; exit 0; fi
quick=(); [ "$device" = cpu ] && quick=(--quick)
timeout 150 "$py" benchmarks/bench_gpu.py --device "$device" "${quick[@]}" --big-tiles 1024 2048 0 \
    --json "$out/bench_gpu.json" > "$out/bench_gpu.log" 2>&1
echo "bench_gpu exit $?" >> "$out/bench_gpu.log"
if [ "$device" != cpu ]; then
    timeout 90 "$py" -m pytest -q -m gpu -p no:cacheprovider tests > "$out/pytest_gpu.log" 2>&1
    echo "pytest exit $?" >> "$out/pytest_gpu.log"
fi
ls -la "$out"
