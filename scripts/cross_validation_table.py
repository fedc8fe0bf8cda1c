"""Compare cross-validated runs (train.py --folds) out of fold, to choose a recipe without the test split.

    python scripts/cross_validation_table.py RUN_DIR [RUN_DIR ...] [--json FILE] [--record MODEL_DIR]

Per run: the options that differ between the runs, the folds' AUC (mean +- sd), the out-of-fold AUC, sensitivity
and specificity at the out-of-fold threshold (95% intervals over groups) and, where lesion masks were given, how
often each fold's model's map peaks inside the lesion on its held-out images. Test figures are left out on
purpose: the test split judges the chosen recipe once, after the choice. --record stores the table in a model
folder's config, and its card shows it ("How the recipe was chosen").
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cancer_models import load_pretrained
from cancer_models.model_card import cross_validation_summary, recipe_selection_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="cross-validated run folders (train.py --folds)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--record", type=Path, help="store the table in this model folder's config and card")
    args = parser.parse_args(argv)
    finished = [r for r in args.runs if (r / "config.json").is_file()]
    for run in args.runs:
        if run not in finished:
            print(f"{run}: no ensemble yet (unfinished), left out", file=sys.stderr)
    if not finished:
        return 1
    rows = [cross_validation_summary(r.name, json.loads((r / "config.json").read_text())["training"]) for r in finished]
    print(recipe_selection_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if args.record:
        model = load_pretrained(args.record)
        model.config.training["recipe_selection"] = rows
        model.save_pretrained(args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
