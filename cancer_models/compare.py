"""Compare models on one image set: `python -m cancer_models.compare --data DIR [DIR ...] --models A B [C ...]`.

Each model is scored on the same images at its own input size and threshold: AUC, sensitivity and specificity
with 95% bootstrap intervals over groups. Each model after the first is compared with the first by a paired
bootstrap over groups (the same resampled groups score both models, so what the images share cancels): the AUC
difference, its 95% interval and a two-sided bootstrap p-value. Prints a markdown table to stderr and one JSON
object as the last line of stdout; ``--out`` also writes both to files.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CheckpointError, ConfigError, DataError
from .evaluate import evaluate
from .metrics import binary_metrics, rank_auc
from .model_card import comparison_table, dataset_name
from .models import load_pretrained


def paired_auc_difference(
    y: Sequence[int],
    p_first: Sequence[float],
    p_other: Sequence[float],
    groups: Sequence[str],
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """AUC(other) - AUC(first) with a 95% paired group-bootstrap interval and a two-sided bootstrap p-value."""
    y, a, b = np.asarray(y), np.asarray(p_first, dtype=float), np.asarray(p_other, dtype=float)
    _, codes = np.unique(np.asarray(groups), return_inverse=True)
    members = [np.flatnonzero(codes == g) for g in range(codes.max() + 1)]
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_bootstrap):
        idx = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        if len(np.unique(y[idx])) == 2:
            diffs.append(rank_auc(y[idx], b[idx]) - rank_auc(y[idx], a[idx]))
    d = np.asarray(diffs)
    # The share of resamples on the far side of zero, doubled: how often chance alone would flip the sign.
    p_value = min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean()))
    return {
        "difference": rank_auc(y, b) - rank_auc(y, a),
        "ci": [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))],
        "p_value": float(p_value),
        "resamples": len(d),
    }


def compare(
    models: Sequence[str],
    data: str | Sequence[str],
    split: str | None = None,
    tta: bool = False,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Every model's metrics on one split of ``data`` (one image set, or several scored together, as a model
    trained on several sources is tested) and each one's paired AUC difference to the first."""
    if len(models) < 2:
        raise ConfigError("compare needs at least two models")
    if names is not None and len(names) != len(models):
        raise ConfigError(f"{len(names)} names for {len(models)} models")
    sources = [data] if isinstance(data, (str, Path)) else list(data)
    rows, raws = [], []
    for name, shown in zip(models, names or models, strict=True):
        model = load_pretrained(name)
        parts = [evaluate(model, source, split, tta) for source in sources]
        raw = _pooled([part[1] for part in parts])
        metrics = (
            parts[0][0]
            if len(parts) == 1
            else binary_metrics(raw["targets"], raw["p_malignant"], model.config.threshold, raw["groups"])
        )
        rows.append(
            {"model": shown, **{k: metrics[k] for k in _COLUMNS}, "n": metrics["n"], "split": parts[0][0]["split"]}
        )
        raws.append(raw)
    first = raws[0]
    for row, raw in zip(rows[1:], raws[1:], strict=True):
        if raw["paths"] != first["paths"]:  # the same loader on the same folder: a mismatch is a bug, not data
            raise DataError("the models were scored on different images")
        row["auc_vs_first"] = paired_auc_difference(
            first["targets"], first["p_malignant"], raw["p_malignant"], raw["groups"]
        )
    return {
        "data": " + ".join(dataset_name(str(s)) for s in sources),
        "split": rows[0]["split"],
        "n": rows[0]["n"],
        "tta": tta,
        "models": rows,
    }


_COLUMNS = ("auc", "auc_ci", "sensitivity", "sensitivity_ci", "specificity", "specificity_ci", "threshold")


def _pooled(raws: list[dict[str, list]]) -> dict[str, list]:
    """Per-image results of several image sets as one; group names are kept apart per set."""
    pooled = {key: [v for raw in raws for v in raw[key]] for key in raws[0]}
    pooled["groups"] = [f"{i}/{g}" for i, raw in enumerate(raws) for g in raw["groups"]]
    return pooled


def record(folder: str, report: dict[str, Any]) -> None:
    """Store ``report`` in the model folder ``folder`` (its config and card); it must be a local folder."""
    if not Path(folder, "config.json").is_file():
        raise ConfigError(f"--record needs a local model folder first, got {folder}")
    model = load_pretrained(folder)
    model.config.training["comparison"] = report
    model.save_pretrained(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cancer_models.compare", description=__doc__)
    parser.add_argument(
        "--data", required=True, nargs="+", help="imagefolder directories (or Hub dataset ids), scored together"
    )
    parser.add_argument(
        "--models", required=True, nargs="+", help="model folders or Hub repo ids; the first is the reference"
    )
    parser.add_argument("--split", default=None, help="split to score (default: test, or the only one)")
    parser.add_argument("--tta", action="store_true", help="average each model's test-time views")
    parser.add_argument("--names", nargs="+", default=None, help="what to call the models in the table")
    parser.add_argument("--out", type=Path, default=None, help="also write comparison.md and comparison.json here")
    parser.add_argument(
        "--record", action="store_true", help="store the comparison in the first model's config and model card"
    )
    args = parser.parse_args(argv)
    try:
        report = compare(args.models, args.data, args.split, args.tta, args.names)
        if args.record:
            record(args.models[0], report)
    except (CheckpointError, ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = comparison_table(report)
    print(table, file=sys.stderr)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "comparison.md").write_text(table + "\n")
        (args.out / "comparison.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
