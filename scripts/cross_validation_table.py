"""Compare cross-validated runs (train.py --folds) out of fold, to choose a recipe without the test split.

    python scripts/cross_validation_table.py RUN_DIR [RUN_DIR ...] [--json FILE]

Per run: input size, the options that differ between the runs, the folds' AUC (mean +- sd), the out-of-fold AUC,
sensitivity and specificity at the out-of-fold threshold (95% intervals over groups) and, where lesion masks
were given, how often each fold's model's map peaks inside the lesion on its held-out images. Test figures are
left out on purpose: the test split judges the chosen recipe once, after the choice.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any


def _options(command: str) -> dict[str, str]:
    """train.py's options as written in its recorded command (flags without a value map to "")."""
    words, options, key = shlex.split(command)[1:], {}, None
    for word in words:
        if word.startswith("--"):
            key = word[2:]
            options[key] = ""
        elif key is not None:
            options[key] = f"{options[key]} {word}".strip()
    return options


def summarise(run: Path) -> dict[str, Any]:
    config = json.loads((run / "config.json").read_text())
    training = config["training"]
    if "cross_validation" not in training:
        raise SystemExit(f"{run} is not a cross-validated run (train.py --folds)")
    cv, oof = training["cross_validation"], training["metrics"]["out_of_fold"]
    return {
        "run": run.name,
        "options": _options(training.get("command", "")),
        "folds_auc": [cv["auc_mean"], cv["auc_sd"]],
        **{k: oof[k] for k in ("n", "auc", "auc_ci", "sensitivity", "sensitivity_ci", "specificity", "specificity_ci")},
        "maps": cv.get("out_of_fold_explanations"),
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    ignored = {"output-dir", "resume"}
    differ = sorted(
        k for k in {k for r in rows for k in r["options"]} - ignored if len({r["options"].get(k) for r in rows}) > 1
    )

    def ci(value: float, bounds: list[float]) -> str:
        return f"{value:.3f} [{bounds[0]:.3f}, {bounds[1]:.3f}]"

    head = ["run", *differ, "folds' AUC", "out-of-fold AUC", "sensitivity", "specificity", "map peak in lesion", "heat"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: -r["auc"]):
        maps = r["maps"]
        peak = ci(maps["peak_in_lesion"]["mean"], maps["peak_in_lesion"]["ci"]) if maps else "n/a"
        heat = f"{maps['heat_in_lesion']['mean']:.3f}" if maps else "n/a"
        cells = [r["run"], *(r["options"].get(k, "-") for k in differ)]
        cells += [f"{r['folds_auc'][0]:.3f} ± {r['folds_auc'][1]:.3f}", ci(r["auc"], r["auc_ci"])]
        cells += [ci(r["sensitivity"], r["sensitivity_ci"]), ci(r["specificity"], r["specificity_ci"]), peak, heat]
        lines.append("| " + " | ".join(cells) + " |")
    n = {r["n"] for r in rows}
    lines.append(f"\nOut of fold: {', '.join(map(str, sorted(n)))} images (train + validation); intervals: bootstrap.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="cross-validated run folders (train.py --folds)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    finished = [r for r in args.runs if (r / "config.json").is_file()]
    for run in sorted(set(args.runs) - set(finished)):
        print(f"{run}: no ensemble yet (unfinished), left out", file=sys.stderr)
    if not finished:
        return 1
    rows = [summarise(r) for r in finished]
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
