#!/usr/bin/env bash
# Cross-validation to choose the ultrasound recipe (input size, augmentation, mask-term weight): each variant of
# the shipped recipe (scripts/train_models.sh ultrasound-cancer-cnn) trains its 5 folds in runs/ultrasound-grid/NAME,
# then cancer-models recipes compares them out of fold (AUC and the map measure); nothing here reads
# the test split's figures. Usage: scripts/ultrasound_grid.sh [PARALLEL]  (variants trained at once, default 1:
# on a GPU several fit beside each other).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
PARALLEL=${1:-1}
THREADS=$(($(nproc) / PARALLEL > 0 ? $(nproc) / PARALLEL : 1))
BASE="--data $DATA/ultrasound --masks $DATA/ultrasound_masks --cam-layers stage3.1 --task ultrasound --model cancer_cnn
  --epochs 50 --patience 10 --lr 1e-3 --weight-decay 0.05 --batch-size 32 --folds 5"
declare -A VARIANTS=(
  [s128]="--input-size 128 --augment ultrasound --mask-loss 3"  # the shipped recipe
  [s96]="--input-size 96 --augment ultrasound --mask-loss 3"
  [s160]="--input-size 160 --augment ultrasound --mask-loss 3"
  [s128-augment-default]="--input-size 128 --augment default --mask-loss 3"  # all orientations, milder contrast
  [s160-augment-default]="--input-size 160 --augment default --mask-loss 3"
  [s128-no-mask-term]="--input-size 128 --augment ultrasound --mask-loss 0"
)

variant() {  # NAME: one variant, with its own datasets cache (variants at once would race on a shared one)
  local out=runs/ultrasound-grid/$1 resume=()
  mkdir -p "$out"
  if compgen -G "$out/fold*/checkpoint/trainer_state.json" > /dev/null; then resume=(--resume); fi
  # shellcheck disable=SC2086
  if HF_DATASETS_CACHE=${TMPDIR:-/tmp}/ultrasound-grid-cache/$1 accelerate launch --num_processes 1 --num_machines 1 \
    --mixed_precision no --dynamo_backend no --num_cpu_threads_per_process "$THREADS" \
    train.py --output-dir "$out" $BASE ${VARIANTS[$1]} "${resume[@]}" > "$out/log" 2>&1; then
    echo "$1: done"
  else
    echo "$1: failed (see $out/log)"
  fi
}

for name in "${!VARIANTS[@]}"; do
  while (($(jobs -rp | wc -l) >= PARALLEL)); do wait -n || true; done
  variant "$name" &
done
wait
cancer-models recipes runs/ultrasound-grid/*/
