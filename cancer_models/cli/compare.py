"""Compare models on the same images: each scored at its own input size and threshold (AUC, sensitivity and
specificity with 95% group-bootstrap intervals), and each after the first compared with the first by a paired
bootstrap over groups (AUC difference, its interval and a two-sided p-value).

    cancer-models compare --data DIR [DIR ...] --models A B [C ...] [--record]

Prints a markdown table to stderr and one JSON object as the last line of stdout; ``--out`` writes both to
files; ``--record`` stores the comparison in the first model's evaluations.json (its card shows it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "compare models on the same images with paired intervals"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, nargs="+", help="image sets (folders or Hub ids), scored together")
    parser.add_argument(
        "--models", required=True, nargs="+", help="model folders or Hub ids; the first is the reference"
    )
    parser.add_argument(
        "--split",
        default="test",
        choices=["test", "validation", "train", "all"],
        help="split to score, as for evaluate: never a model's training images unless 'train' or 'all'",
    )
    parser.add_argument("--tta", action="store_true", help="average each model's test-time views")
    parser.add_argument("--names", nargs="+", default=None, help="what to call the models in the table")
    parser.add_argument("--out", type=Path, default=None, help="also write comparison.md and comparison.json here")
    parser.add_argument("--record", action="store_true", help="store the comparison beside the first model")


def run(args: argparse.Namespace) -> int:
    from ..evaluation.compare import compare
    from ..evaluation.evaluate import record_evaluation
    from ..reporting.tables import comparison_table

    report = compare(args.models, args.data, args.split, args.tta, args.names)
    if args.record:
        record_evaluation(args.models[0], "comparison", report)
    table = comparison_table(report)
    print(table, file=sys.stderr)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "comparison.md").write_text(table + "\n")
        (args.out / "comparison.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    return 0
