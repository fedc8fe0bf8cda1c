#!/usr/bin/env bash
# Run every benchmark and keep its JSON in benchmarks/results/NAME.json (one machine at a time).
# Run on an otherwise idle machine: training or tests in the background change every figure.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p benchmarks/results
suffix=${1:-cpu}
gpu=$(python -c "import torch; print(int(torch.cuda.is_available()))")
# A GPU step takes milliseconds, so it needs many more timed steps than a CPU step of seconds.
steps=$((gpu ? 100 : 12))
python benchmarks/train_throughput.py --steps "$steps" > "benchmarks/results/train_throughput-$suffix.json"
# Compiled training: measured once on the CPU, where it gains nothing; on a GPU it fuses kernels.
if ((gpu)); then
  python benchmarks/train_throughput.py --steps "$steps" --compile \
    > "benchmarks/results/train_throughput-$suffix-compile.json"
fi
python benchmarks/inference.py --compile > "benchmarks/results/inference-$suffix.json"
python benchmarks/explain_and_app.py > "benchmarks/results/explain_and_app-$suffix.json"
python benchmarks/cold_start.py > "benchmarks/results/cold_start-$suffix.json"
python benchmarks/rejection.py > "benchmarks/results/rejection-$suffix.json"
