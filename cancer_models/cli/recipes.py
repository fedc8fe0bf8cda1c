"""Compare cross-validated training runs (``cancer-models train --folds K``) out of fold, to choose a recipe
without the test split: per run, the options that differ, the folds' AUC (mean +- sd), the out-of-fold AUC,
sensitivity and specificity (95% intervals over groups) and, where lesion masks were given, how often each
fold's map peaks inside the lesion on its held-out images. Test figures are left out on purpose: the test split
judges the chosen recipe once, after the choice.

    cancer-models recipes runs/a runs/b runs/c [--json rows.json] [--record models/chosen]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import ModelConfig
from ..errors import DataError

HELP = "tabulate cross-validated runs out of fold to choose a recipe"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", type=Path, help="cross-validated run folders")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--record", type=Path, help="store the table in this model folder's evaluations.json")


def run(args: argparse.Namespace) -> int:
    from ..evaluation.evaluate import record_evaluation
    from ..reporting.tables import cross_validation_summary, recipe_selection_table

    finished = [r for r in args.runs if (r / "config.json").is_file()]
    for unfinished in sorted(set(args.runs) - set(finished)):
        print(f"{unfinished}: no ensemble yet (unfinished), left out", file=sys.stderr)
    if not finished:
        raise DataError("none of the runs has finished (no config.json)")
    rows = [cross_validation_summary(r.name, ModelConfig.load(r / "config.json").training) for r in finished]
    print(recipe_selection_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if args.record:
        record_evaluation(args.record, "recipe_selection", rows)
    return 0
