"""Leave-one-source-out: how models trained without one collection (``cancer-models train --leave-out NAME``) did
on it, side by side, and stored with the model that ships so that its card shows them beside its pooled test
figures. Per run: the collection left out, its images, AUC, sensitivity and specificity (95% intervals over
groups), sensitivity at 90% specificity, the share its rejection check refused and the prediction sets' coverage.

    cancer-models sources runs/without-glas runs/without-lc25000 [--record models/histopathology-cancer-cnn]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import ModelConfig
from ..errors import DataError

HELP = "tabulate runs trained with --leave-out on the collections they never saw"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", type=Path, help="run folders trained with --leave-out")
    parser.add_argument("--record", type=Path, help="store the table in this model folder's evaluations.json")


def run(args: argparse.Namespace) -> int:
    from ..evaluation.evaluate import record_evaluation
    from ..reporting.tables import left_out_row, left_out_table

    rows = []
    for folder in args.runs:
        if not (folder / "config.json").is_file():
            raise DataError(f"{folder}: no finished run (no config.json)")
        training = ModelConfig.load(folder / "config.json").training
        if "left_out" not in training.metrics:
            raise DataError(f"{folder} was not trained with --leave-out: nothing was left out to score")
        rows.append(left_out_row(folder.name, training))
    print(left_out_table(rows))
    if args.record:
        record_evaluation(args.record, "left_out", rows)
        print(f"recorded in {args.record}", file=sys.stderr)
    return 0
