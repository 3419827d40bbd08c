#!/usr/bin/env bash
# Quantized random projections of the observation (qbc train --obs-encoder) on an open-loop
# unstable system: the same AR transformer (uniform, 32 bins, 3000 steps) trained on 100 LQR
# episodes of qbc/LinearUnstable-v0 with no encoder and with qrp encoders of 1-3 bits, then
# 100 coupled rollouts each. About 6 minutes on 2 cores. Results: docs/results/obs_encoder.
# Usage: bash scripts/compare_obs_encoders.sh [OUT_DIR]   (default runs/obs_encoders)
# Smaller runs (scripts/reproduce_results.py --quick) set DEMOS, STEPS, EPISODES, ENCODERS.
set -euo pipefail
out=${1:-runs/obs_encoders}
demos=${DEMOS:-100}
steps=${STEPS:-3000}
episodes=${EPISODES:-100}
encoders=${ENCODERS:-"none qrp:k=16,bits=1 qrp:k=16,bits=2 qrp:k=16,bits=3 qrp:k=64,bits=2"}
mkdir -p "$out"
export OMP_NUM_THREADS=1 MINARI_DATASETS_PATH="$out/minari"
qbc collect --env qbc/LinearUnstable-v0 --expert lqr --episodes "$demos" --num-envs "$demos" \
    --dataset qbc/obs-encoders-v0 --overwrite
for spec in $encoders; do
    name=$(echo "$spec" | tr ':=,' '___')
    encoder=()
    [ "$spec" != none ] && encoder=(--obs-encoder "$spec")
    qbc train --dataset qbc/obs-encoders-v0 --quantizer uniform --bins 32 \
        --policy ar-transformer --steps "$steps" --eval-interval 1000 --rollout-episodes 0 \
        --no-progress --overwrite --out "$out/train_$name" "${encoder[@]}" \
        --model.head plain --select-by val-loss --token-target soft  # the published run's
    qbc rollout --policy "$out/train_$name" --env qbc/LinearUnstable-v0 --episodes "$episodes" \
        --horizons 50,200,500 --overwrite --out "$out/rollout_$name" | tee "$out/rollout_$name.txt"
done
