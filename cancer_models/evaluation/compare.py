"""Compare models on one image set (``cancer-models compare``).

Each model is scored on the same images at its own input size and threshold: AUC, sensitivity and specificity
with 95% bootstrap intervals over groups. Each model after the first is compared with the first by a paired
bootstrap over groups (the same resampled groups score both models, so what the images share cancels): the AUC
difference, its 95% interval and a two-sided bootstrap p-value.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..inference.pretrained import load_pretrained
from ..sources import display_name
from .evaluate import ScoredImages, evaluate
from .metrics import binary_metrics, rank_auc, units_per_class


def paired_auc_difference(
    y: Sequence[int],
    p_first: Sequence[float],
    p_other: Sequence[float],
    groups: Sequence[str],
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """AUC(other) - AUC(first) with a 95% paired group-bootstrap interval and a two-sided bootstrap p-value;
    neither (None) where a single group holds one of the classes."""
    y, a, b = np.asarray(y), np.asarray(p_first, dtype=float), np.asarray(p_other, dtype=float)
    _, codes = np.unique(np.asarray(groups), return_inverse=True)
    if min(units_per_class(y, codes)) == 1:  # one patient holds a class: no resample tells anything new
        return {"difference": rank_auc(y, b) - rank_auc(y, a), "ci": None, "p_value": None, "resamples": 0}
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
    split: str = "test",
    tta: bool = False,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Several models scored on the same images, each against the first.

    Args:
        models: model folders or Hub repo ids (at least two).
        data: one image set, or several scored together (as a model trained on several sources is tested).
        split: the split to score (``evaluate``'s choice, never training images unless asked).
        tta: average each model's test-time views.
        names: how the table names the models; None: as given.

    Returns:
        The data, split and image count, and per model its AUC, sensitivity and specificity with intervals and
        its paired (group bootstrap) AUC difference to the first; the same per collection where the images
        hold several (``collection_comparison``).

    Raises:
        ConfigError: fewer than two models, or names that do not match them.
        DataError: models whose training runs split the data differently (scored on different images).
    """
    if len(models) < 2:
        raise ConfigError("compare needs at least two models")
    if names is not None and len(names) != len(models):
        raise ConfigError(f"{len(names)} names for {len(models)} models")
    sources = [data] if isinstance(data, (str, Path)) else list(data)
    rows, scores = [], []
    for name, shown in zip(models, names or models, strict=True):
        model = load_pretrained(name)
        parts = [evaluate(model, source, split, tta) for source in sources]
        scored = parts[0].images if len(parts) == 1 else ScoredImages.pooled([part.images for part in parts])
        metrics = (
            parts[0].metrics
            if len(parts) == 1
            else binary_metrics(scored.targets, scored.p_malignant, model.config.threshold, scored.groups)
        )
        rows.append(
            {
                "model": shown,
                **{k: metrics[k] for k in _COLUMNS},
                "n": metrics["n"],
                "split": parts[0].split,
                "includes_training_images": any(part.includes_training_images for part in parts),
                "split_note": "; ".join(part.split_note for part in parts),
            }
        )
        scores.append(scored)
    first = scores[0]
    for row, raw in zip(rows[1:], scores[1:], strict=True):
        if raw.paths != first.paths:  # a split recreated from each model's own training record can differ
            raise DataError(
                "the models were scored on different images: their training runs split the data differently "
                f"({rows[0]['split_note']} vs {row['split_note']}); compare them on a folder with its own test split"
            )
        row["auc_vs_first"] = paired_auc_difference(first.targets, first.p_malignant, raw.p_malignant, raw.groups)
    report = {
        "data": " + ".join(display_name(str(s)) for s in sources),
        "split": rows[0]["split"],
        "n": rows[0]["n"],
        "tta": tta,
        "models": rows,
    }
    per_collection = collection_comparison(rows, scores)
    if per_collection:
        report["per_collection"] = per_collection
    return report


def collection_comparison(rows: list[dict[str, Any]], scores: list[ScoredImages]) -> dict[str, Any]:
    """The comparison again within each collection (clinic, lab) of the images, where they hold two or more:
    a model can win on the mix and lose on one lab. Each model's AUC, sensitivity and specificity at its own
    threshold, with group-bootstrap intervals, and each after the first its paired AUC difference to the first.

    Args:
        rows: ``compare``'s rows, one per model (their names and thresholds).
        scores: what each model said about the same images, in one order.

    Returns:
        ``{collection: {"n": images, "models": [row, ...]}}``; empty for fewer than two named collections, and
        without the collections holding one class only (no AUC).
    """
    names = np.asarray(scores[0].collections)
    targets, groups = np.asarray(scores[0].targets), np.asarray(scores[0].groups)
    if len(set(scores[0].collections) - {""}) < 2:
        return {}
    report = {}
    for collection in sorted(set(scores[0].collections) - {""}):
        index = np.flatnonzero(names == collection)
        if len(set(targets[index])) < 2:
            continue
        parts = []
        for row, scored in zip(rows, scores, strict=True):
            p = np.asarray(scored.p_malignant)[index]
            metrics = binary_metrics(targets[index], p, row["threshold"], groups[index].tolist())
            part = {"model": row["model"], **{k: metrics[k] for k in _COLUMNS}}
            if parts:
                first = np.asarray(scores[0].p_malignant)[index]
                part["auc_vs_first"] = paired_auc_difference(targets[index], first, p, groups[index])
            parts.append(part)
        report[collection] = {"n": len(index), "models": parts}
    return report


_COLUMNS = ("auc", "auc_ci", "sensitivity", "sensitivity_ci", "specificity", "specificity_ci", "threshold")
