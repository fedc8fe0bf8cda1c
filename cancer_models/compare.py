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
    models: Sequence[str], data: str | Sequence[str], split: str | None = None, tta: bool = False
) -> dict[str, Any]:
    """Every model's metrics on one split of ``data`` (one image set, or several scored together, as a model
    trained on several sources is tested) and each one's paired AUC difference to the first."""
    if len(models) < 2:
        raise ConfigError("compare needs at least two models")
    sources = [data] if isinstance(data, (str, Path)) else list(data)
    rows, raws = [], []
    for name in models:
        model = load_pretrained(name)
        parts = [evaluate(model, source, split, tta) for source in sources]
        raw = _pooled([part[1] for part in parts], several=len(sources) > 1)
        metrics = (
            parts[0][0]
            if len(parts) == 1
            else binary_metrics(raw["targets"], raw["p_malignant"], model.config.threshold, raw["groups"])
        )
        rows.append(
            {"model": name, **{k: metrics[k] for k in _COLUMNS}, "n": metrics["n"], "split": parts[0][0]["split"]}
        )
        raws.append(raw)
    first = raws[0]
    for row, raw in zip(rows[1:], raws[1:], strict=True):
        if raw["paths"] != first["paths"]:  # the same loader on the same folder: a mismatch is a bug, not data
            raise DataError("the models were scored on different images")
        row["auc_vs_first"] = paired_auc_difference(
            first["targets"], first["p_malignant"], raw["p_malignant"], raw["groups"]
        )
    shown = " + ".join(str(s) for s in sources)
    return {"data": shown, "split": rows[0]["split"], "n": rows[0]["n"], "tta": tta, "models": rows}


def _pooled(raws: list[dict[str, list]], several: bool) -> dict[str, list]:
    """Per-image results of several image sets as one; group names are kept apart per set."""
    pooled = {key: [v for raw in raws for v in raw[key]] for key in raws[0]}
    if several:
        pooled["groups"] = [f"{i}/{g}" for i, raw in enumerate(raws) for g in raw["groups"]]
    return pooled


_COLUMNS = ("auc", "auc_ci", "sensitivity", "sensitivity_ci", "specificity", "specificity_ci", "threshold")


def to_markdown(report: dict[str, Any]) -> str:
    def with_ci(value: float | None, ci: list[float] | None) -> str:
        if value is None:
            return "n/a"
        return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{value:.3f}"

    lines = [
        (
            f"Data: `{report['data']}`, split `{report['split']}`, {report['n']} images. 95% intervals: bootstrap "
            "over groups; the AUC difference is paired (both models on the same resamples)."
        ),
        "",
        "| model | AUC | sensitivity | specificity | threshold | AUC - first model | p |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["models"]:
        versus = row.get("auc_vs_first")
        difference, p_value = "", ""
        if versus:
            difference = f"{versus['difference']:+.3f} [{versus['ci'][0]:+.3f}, {versus['ci'][1]:+.3f}]"
            p_value = f"{versus['p_value']:.3f}"
        lines.append(
            f"| {row['model']} | {with_ci(row['auc'], row['auc_ci'])} | "
            f"{with_ci(row['sensitivity'], row['sensitivity_ci'])} | "
            f"{with_ci(row['specificity'], row['specificity_ci'])} | {row['threshold']:.3f} | {difference} | {p_value} |"
        )
    return "\n".join(lines)


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
    parser.add_argument("--out", type=Path, default=None, help="also write comparison.md and comparison.json here")
    args = parser.parse_args(argv)
    try:
        report = compare(args.models, args.data, args.split, args.tta)
    except (CheckpointError, ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = to_markdown(report)
    print(table, file=sys.stderr)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "comparison.md").write_text(table + "\n")
        (args.out / "comparison.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
