#!/usr/bin/env bash
# Rebuild the project's models from ../shared/data (or DATA=...), from scratch, on CPU or GPU.
# Usage: scripts/train_models.sh [NAME ...]   (default: all). Re-running resumes an interrupted run.
# The 5-fold recipes train their folds one after another; on several GPUs, run each fold with --fold K
# (docs/training.md) and then this script, which resumes and builds the ensemble.
# Each run writes runs/NAME (checkpoints, logs); scripts/export_model.py then copies the publishable
# files to models/NAME.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
# accelerate launch sets OMP_NUM_THREADS=1 unless told otherwise, which halves CPU training speed on 2 cores.
LAUNCH=${LAUNCH:-accelerate launch --num_processes 1 --mixed_precision no --num_cpu_threads_per_process $(nproc)}

train() {  # NAME ARGS...
  local name=$1; shift
  local resume=()
  if compgen -G "runs/$name/checkpoint/trainer_state.json" > /dev/null ||
    compgen -G "runs/$name/fold*/checkpoint/trainer_state.json" > /dev/null; then resume=(--resume); fi
  $LAUNCH train.py --output-dir "runs/$name" "$@" "${resume[@]}"
}

# Where lesion masks exist: choose the default CAM layers and method on the validation split and measure them on
# the test split (cancer-models calibrate --masks), after training; further calibrate options follow.
explain() {  # NAME DATA... -- IMAGES MASKS [OPTION ...]
  local name=$1; shift
  local data=()
  while [ "$1" != "--" ]; do data+=("$1"); shift; done
  cancer-models calibrate --model "runs/$name" --data "${data[@]}" --masks "$2" "$3" "${@:4}"
}

HISTOPATHOLOGY="--data $DATA/histopathology $DATA/histopathology_glas --task 'histopathology (LC25000 + GlaS)' --model cancer_cnn --input-size 128 --augment histopathology_strong_stain --epochs 15 --patience 5 --lr 2e-3 --weight-decay 0.05 --tile-size 160 --tile-mpp 1.25 --source-mpp histopathology=1.25 histopathology_glas=0.62 --colour-constancy optical_density"
DERMOSCOPY="--data $DATA/dermoscopy $DATA/dermoscopy_multiclass --masks none $DATA/dermoscopy_multiclass_masks --mask-loss 1 --cam-layers stage3.1 --task dermoscopy --model cancer_cnn --input-size 128 --augment dermoscopy --epochs 11 --patience 4 --lr 2e-3 --weight-decay 0.05 --license cc-by-nc-sa-4.0"

# The leave-one-source-out table a shipped model's card shows: recorded once every such run exists.
record_left_out() {  # MODEL RUN...
  local model=$1; shift
  for run in "$@"; do [ -f "runs/$run/config.json" ] || return 0; done
  cancer-models sources "${@/#/runs/}" --record "runs/$model"
}

declare -A RECIPES=(
  [histopathology-cancer-cnn]="$HISTOPATHOLOGY"
  [dermoscopy-cancer-cnn]="$DERMOSCOPY --folds 5"
  # Leave-one-source-out: the same recipe without one collection, scored on it (one model each, not an ensemble)
  [histopathology-without-glas]="$HISTOPATHOLOGY --leave-out GlaS"
  [histopathology-without-lc25000]="$HISTOPATHOLOGY --leave-out LC25000"
  [dermoscopy-without-isic]="$DERMOSCOPY --leave-out ISIC"
  [dermoscopy-without-vidir-modern]="$DERMOSCOPY --leave-out vidir_modern"
  [dermoscopy-without-rosendahl]="$DERMOSCOPY --leave-out rosendahl"
  [ultrasound-cancer-cnn]="--data $DATA/ultrasound --masks $DATA/ultrasound_masks --mask-loss 3 --cam-layers stage3.1 --task ultrasound --model cancer_cnn --input-size 128 --augment ultrasound --epochs 50 --patience 10 --lr 1e-3 --weight-decay 0.05 --batch-size 32 --folds 5 --license cc-by-4.0"
  [mammography-cancer-cnn]="--data $DATA/mammography --task mammography --model cancer_cnn --input-size 256 --preprocessing mammogram --augment mammography --epochs 30 --patience 8 --lr 2e-3 --weight-decay 0.05 --batch-size 32 --threshold-rule sensitivity=0.9 --license other"
  [histopathology-resnet34]="--data $DATA/histopathology --task histopathology --model resnet34 --input-size 96 --augment histopathology --epochs 12 --patience 4 --lr 1e-3 --weight-decay 0.05"
  [ultrasound-resnet34]="--data $DATA/ultrasound --task ultrasound --model resnet34 --input-size 128 --augment ultrasound --epochs 40 --patience 10 --lr 1e-3 --weight-decay 0.05 --batch-size 32 --license cc-by-4.0"
  [dermoscopy-resnet34]="--data $DATA/dermoscopy --task dermoscopy --model resnet34 --input-size 96 --augment dermoscopy --epochs 30 --patience 8 --lr 1e-3 --weight-decay 0.05 --license cc-by-nc-4.0"
)

names=("$@")
[ ${#names[@]} -eq 0 ] && names=(histopathology-without-glas histopathology-without-lc25000 dermoscopy-without-isic
  dermoscopy-without-vidir-modern dermoscopy-without-rosendahl histopathology-cancer-cnn dermoscopy-cancer-cnn
  ultrasound-cancer-cnn mammography-cancer-cnn histopathology-resnet34 dermoscopy-resnet34 ultrasound-resnet34)
for name in "${names[@]}"; do
  [ -n "${RECIPES[$name]:-}" ] || { echo "unknown model $name; known: ${!RECIPES[*]}" >&2; exit 2; }
  # eval: a recipe may quote an option with spaces (--task 'histopathology (LC25000 + GlaS)')
  eval "train \"\$name\" ${RECIPES[$name]}"
  # Every shipped model refuses the other modalities' validation images (calibrate --refuse).
  case $name in
    ultrasound-cancer-cnn) explain "$name" "$DATA/ultrasound" -- "$DATA/ultrasound" "$DATA/ultrasound_masks" \
      --refuse "$DATA/histopathology" "$DATA/dermoscopy" "$DATA/dermoscopy_multiclass" "$DATA/mammography" ;;
    mammography-cancer-cnn) cancer-models calibrate --model "runs/$name" --data "$DATA/mammography" \
      --refuse "$DATA/histopathology" "$DATA/dermoscopy" "$DATA/dermoscopy_multiclass" "$DATA/ultrasound" ;;
    ultrasound-*) explain "$name" "$DATA/ultrasound" -- "$DATA/ultrasound" "$DATA/ultrasound_masks" ;;
    dermoscopy-cancer-cnn) explain "$name" "$DATA/dermoscopy" "$DATA/dermoscopy_multiclass" -- \
      "$DATA/dermoscopy_multiclass" "$DATA/dermoscopy_multiclass_masks" --refuse "$DATA/histopathology" "$DATA/ultrasound" \
      "$DATA/mammography"
      record_left_out "$name" dermoscopy-without-isic dermoscopy-without-vidir-modern dermoscopy-without-rosendahl ;;
    # Leave-one-source-out runs are calibrated as the shipped model is, so that their left-out refusals are its recipe's
    histopathology-without-*) cancer-models calibrate --model "runs/$name" --data "$DATA/histopathology" \
      "$DATA/histopathology_glas" --refuse "$DATA/dermoscopy" "$DATA/dermoscopy_multiclass" "$DATA/ultrasound" \
      "$DATA/mammography" --layers-over collections ;;
    dermoscopy-without-*) cancer-models calibrate --model "runs/$name" --data "$DATA/dermoscopy" \
      "$DATA/dermoscopy_multiclass" --refuse "$DATA/histopathology" "$DATA/ultrasound" "$DATA/mammography" ;;
    # LC25000 and GlaS tiles at one scale, 160 px at 1.25 um per pixel (scripts/lc25000_scale.py), recorded at training
    # Layer limits over labs: another lab's stain is left to the image statistics and domain score to judge
    histopathology-cancer-cnn) cancer-models calibrate --model "runs/$name" --data "$DATA/histopathology" \
      "$DATA/histopathology_glas" --refuse "$DATA/dermoscopy" "$DATA/dermoscopy_multiclass" "$DATA/ultrasound" \
      "$DATA/mammography" --layers-over collections
      record_left_out "$name" histopathology-without-glas histopathology-without-lc25000 ;;
    # trained on the ISIC set alone: its rejection and prediction sets are refitted on that alone
    dermoscopy-resnet34) explain "$name" "$DATA/dermoscopy" -- "$DATA/dermoscopy_multiclass" "$DATA/dermoscopy_multiclass_masks" ;;
  esac
done
