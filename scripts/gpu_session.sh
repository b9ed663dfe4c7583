#!/usr/bin/env bash
# One GPU session end to end: resume the committed training state (weights/training),
# train for BUDGET seconds, evaluate, and leave what must come back under $OUT (at most
# 8 files): checkpoint.pt, train_log.jsonl, ema.safetensors, train.log, eval.json,
# curve.png and bench_train.json.
#
#   OUT=DIR scripts/gpu_session.sh BUDGET_S [cuda|cpu]
#
# Photos: runs/gpu_data from scripts/pack_gpu_data.py (carry it). Rehearse on the CPU
# with a tiny budget first:  OUT=/tmp/gpu scripts/gpu_session.sh 60 cpu
# Back here: copy checkpoint.pt and train_log.jsonl into weights/training/ and commit.
set -euo pipefail
budget=${1:?usage: OUT=DIR scripts/gpu_session.sh BUDGET_S [cuda|cpu]}
device=${2:-cuda}
out=${OUT:?set OUT to the folder that comes back}
data=${DATA:-runs/gpu_data}
py=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
rbqe() { "$py" -m rbqe.cli "$@"; }

[ -d "$data/train" ] || { echo "no $data/train: run scripts/pack_gpu_data.py and carry it" >&2; exit 2; }
state="$out/training"
mkdir -p "$state"
cp weights/training/checkpoint.pt "$state/"
[ -f weights/training/train_log.jsonl ] && cp weights/training/train_log.jsonl "$state/"

if [ "$device" = cpu ]; then  # a rehearsal: the stored batch, one batch-maker
    run_args=(--workers 1 --val-every 20)
else  # issue 10's CUDA levers, measured by benchmarks/bench_train.py
    run_args=(--batch 256 --patch 128 --bf16 --workers 14 --val-every 2000)
fi
set -o pipefail
rbqe train --out "$state" --device "$device" --data "$data/train" --val "$data/val" \
    --time-budget "$budget" "${run_args[@]}" 2>&1 | tee "$out/train.log"

rbqe eval "$data/val" --gray --qf 10 30 50 70 90 --weights "$state/ema.safetensors" \
    --device "$device" --json "$out/eval.json" 2>&1 | tee -a "$out/train.log"
rbqe train-curve "$state/train_log.jsonl" --plot "$out/curve.png"
if [ "$device" != cpu ]; then
    "$py" benchmarks/bench_train.py --device "$device" --data "$data/train" \
        --json "$out/bench_train.json" 2>&1 | tee -a "$out/train.log"
fi
# Flatten to the files that come back; last/best weights are in the checkpoint.
mv "$state/checkpoint.pt" "$state/train_log.jsonl" "$state/ema.safetensors" "$out/"
rm -rf "$state"
ls -la "$out"
