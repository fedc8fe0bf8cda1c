#!/usr/bin/env bash
# Run every benchmark and keep its JSON in benchmarks/results/NAME.json (one machine at a time).
# Run on an otherwise idle machine: training or tests in the background change every figure.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p benchmarks/results
suffix=${1:-cpu}
# A GPU step takes milliseconds, so it needs many more timed steps than a CPU step of seconds.
steps=$(python -c "import torch; print(100 if torch.cuda.is_available() else 12)")
python benchmarks/train_throughput.py --steps "$steps" > "benchmarks/results/train_throughput-$suffix.json"
python benchmarks/inference.py --compile > "benchmarks/results/inference-$suffix.json"
python benchmarks/explain_and_app.py > "benchmarks/results/explain_and_app-$suffix.json"
