"""Binary classification metrics with honest uncertainty, calibration and threshold choice.

One implementation serves train.py (validation each epoch, the final test report) and
``cancer-models evaluate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import binomtest, rankdata
from sklearn.metrics import confusion_matrix, f1_score, precision_score, roc_auc_score, roc_curve


def expected_calibration_error(y_true: np.ndarray, p_malignant: np.ndarray, n_bins: int = 10) -> float:
    """ECE of the predicted class's probability over equal-width confidence bins (Guo et al., 2017)."""
    y_true, p = np.asarray(y_true), np.asarray(p_malignant, dtype=np.float64)
    confidence = np.maximum(p, 1 - p)
    correct = (p >= 0.5).astype(int) == y_true
    bins = np.minimum(((confidence - 0.5) * 2 * n_bins).astype(int), n_bins - 1)  # confidence is in [0.5, 1]
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else None


def rank_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney U statistic over (tie-averaged) ranks: the same number as ``roc_auc_score``
    without its input validation, which dominates the cost of a thousand bootstrap resamples."""
    positive = y == 1
    n_pos = int(positive.sum())
    n_neg = len(y) - n_pos
    return float((rankdata(p)[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def sensitivity_at_specificity(y: np.ndarray, p: np.ndarray, specificity: float = 0.9) -> float | None:
    """A screening reader's figure at a fixed false-positive rate.

    Args:
        y: 0 or 1 per image.
        p: the malignant probability per image.
        specificity: the least specificity the threshold must keep.

    Returns:
        The highest sensitivity of any threshold whose specificity is at least ``specificity`` (ties count
        against the model); None without both classes.
    """
    negatives, positives = np.sort(p[y == 0]), p[y == 1]
    if not len(negatives) or not len(positives):
        return None
    k = int(np.ceil(specificity * len(negatives)))  # at least k negatives must lie below the threshold
    cut = negatives[k - 1] if k > 0 else -np.inf
    return float((positives > cut).mean())


def specificity_at_sensitivity(y: np.ndarray, p: np.ndarray, sensitivity: float = 0.9) -> float | None:
    """The highest specificity of any threshold whose sensitivity is at least ``sensitivity`` (ties count
    against the model)."""
    positives, negatives = np.sort(p[y == 1]), p[y == 0]
    if not len(negatives) or not len(positives):
        return None
    m = int(np.floor((1 - sensitivity) * len(positives) + 1e-9))  # at most m positives may fall below it
    cut = positives[m]
    return float((negatives < cut).mean())


def _point_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return {
        "auc": _auc(y, p),
        "accuracy": float((tp + tn) / len(y)),
        "sensitivity": float(tp / (tp + fn)) if tp + fn else None,
        "specificity": float(tn / (tn + fp)) if tn + fp else None,
        "precision": float(precision_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "confusion_matrix": [[int(tn), int(fp)], [int(fn), int(tp)]],
        "sensitivity_at_90_specificity": sensitivity_at_specificity(y, p, 0.9),
        "specificity_at_90_sensitivity": specificity_at_sensitivity(y, p, 0.9),
    }


def binary_metrics(
    y_true: Sequence[int],
    p_malignant: Sequence[float],
    threshold: float = 0.5,
    groups: Sequence[str] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """Metrics at ``threshold`` with 95% bootstrap intervals.

    With ``groups`` the bootstrap resamples whole groups (near-copies of one source image): resampling
    correlated images one by one would give intervals that are too narrow.

    Args:
        y_true: 0 (benign) or 1 (malignant) per image.
        p_malignant: the calibrated malignant probability per image.
        threshold: the decision threshold.
        groups: each image's group (patient, lesion, source image); None: each image its own.
        n_bootstrap: resamples for the intervals (0: none).
        seed: the bootstrap's seed.

    Returns:
        ``n`` and the class counts; AUC, accuracy, sensitivity, specificity, precision, F1, the confusion matrix,
        sensitivity at 90% specificity and specificity at 90% sensitivity, ECE; ``*_ci`` intervals and how they
        were drawn (``bootstrap``). A metric a split cannot give (one class only) is None.
    """
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(p_malignant, dtype=np.float64)
    if len(y) == 0 or len(y) != len(p):
        raise ValueError(f"need as many labels as probabilities, and at least one (got {len(y)} and {len(p)})")
    result = {
        "n": len(y),
        "n_benign": int((y == 0).sum()),
        "n_malignant": int((y == 1).sum()),
        "threshold": float(threshold),
        **_point_metrics(y, p, threshold),
        "ece": expected_calibration_error(y, p),
    }
    if n_bootstrap:
        result.update(_bootstrap_intervals(y, p, threshold, groups, n_bootstrap, seed))
    return result


_CI_METRICS = (
    "auc",
    "accuracy",
    "sensitivity",
    "specificity",
    "sensitivity_at_90_specificity",
    "specificity_at_90_sensitivity",
)


def _bootstrap_intervals(y, p, threshold, groups, n_bootstrap, seed) -> dict:
    rng = np.random.default_rng(seed)
    if groups is None:
        members = [np.array([i]) for i in range(len(y))]
    else:
        _, codes = np.unique(np.asarray(groups), return_inverse=True)
        members = [np.flatnonzero(codes == g) for g in range(codes.max() + 1)]
    unit_of = np.empty(len(y), dtype=int)
    for g, idx in enumerate(members):
        unit_of[idx] = g
    samples: dict[str, list[float]] = {k: [] for k in _CI_METRICS}
    for _ in range(n_bootstrap):
        idx = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        yb, pb = y[idx], p[idx]
        predicted = pb >= threshold
        if len(np.unique(yb)) == 2:
            samples["auc"].append(rank_auc(yb, pb))
            samples["sensitivity"].append(predicted[yb == 1].mean())
            samples["specificity"].append((~predicted[yb == 0]).mean())
            samples["sensitivity_at_90_specificity"].append(sensitivity_at_specificity(yb, pb, 0.9))
            samples["specificity_at_90_sensitivity"].append(specificity_at_sensitivity(yb, pb, 0.9))
        samples["accuracy"].append((predicted == yb).mean())
    out = {
        f"{k}_ci": [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if v else None
        for k, v in samples.items()
    }
    out["bootstrap"] = {"resamples": n_bootstrap, "unit": "group" if groups is not None else "image"}
    if min(units_per_class(y, unit_of)) == 1:
        # One group (patient) holds a class: every resample that can rank holds that one group, and an interval
        # over them is as narrow as if the class's single patient stood for all. There is none to give.
        for key in ("auc", "sensitivity_at_90_specificity", "specificity_at_90_sensitivity"):
            out[f"{key}_ci"] = None
        out["bootstrap"]["no_interval_for"] = ["auc", "sensitivity_at_90_specificity", "specificity_at_90_sensitivity"]
    predicted = p >= threshold
    exact = []
    for key, subset in (("accuracy", np.ones(len(y), bool)), ("sensitivity", y == 1), ("specificity", y == 0)):
        ci = out[f"{key}_ci"]
        if ci is not None and ci[0] == ci[1] and subset.any():
            # Every resample agrees (no error at all, say): a zero-width interval claims certainty.
            # Use the exact binomial interval over the independent units instead.
            units = np.unique(unit_of[subset])
            if len(units) == 1:  # one patient: an interval over units has nothing to say
                out[f"{key}_ci"] = None
                out["bootstrap"].setdefault("no_interval_for", []).append(key)
                continue
            wrong = np.unique(unit_of[subset & (predicted != (y == 1))])
            low, high = binomtest(len(units) - len(wrong), len(units)).proportion_ci(0.95, method="exact")
            out[f"{key}_ci"] = [float(low), float(high)]
            exact.append(key)
    if exact:
        out["bootstrap"]["exact_binomial_for"] = exact
    return out


def units_per_class(y: np.ndarray, unit_of: np.ndarray) -> list[int]:
    """How many independent units (groups) hold benign images and how many hold malignant ones."""
    return [len(np.unique(unit_of[y == c])) for c in (0, 1)]


# Fewer images of a category than this and its figure is reported as too few to say much.
MIN_SUBTYPE_IMAGES = 20
CLASS_NAMES = {"benign", "malignant"}


def subtype_metrics(
    y_true: Sequence[int], p_malignant: Sequence[float], threshold: float, subtypes: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Per category of the data's subtype column (e.g. nevus, melanoma): how many images, which class they
    belong to, and the share the model gets right at ``threshold`` (sensitivity for a malignant category,
    specificity for a benign one) with the exact binomial 95% interval over images."""
    y, predicted = np.asarray(y_true, dtype=int), np.asarray(p_malignant) >= threshold
    names = np.asarray(subtypes)
    out = {}
    for name in sorted(set(subtypes) - {""}):
        members = names == name
        target = round(y[members].mean())
        right = int((predicted[members] == bool(target)).sum())
        n = int(members.sum())
        low, high = binomtest(right, n).proportion_ci(0.95, method="exact")
        out[name] = {
            "n": n,
            "label": target,
            "metric": "sensitivity" if target else "specificity",
            "value": right / n,
            "ci": [float(low), float(high)],
            "too_few": n < MIN_SUBTYPE_IMAGES,
        }
    return out


def subtype_pair_metrics(
    y_true: Sequence[int],
    p_malignant: Sequence[float],
    threshold: float,
    groups: Sequence[str],
    subtypes: Sequence[str],
    at_least: int = MIN_SUBTYPE_IMAGES,
) -> dict[str, dict[str, Any]]:
    """``binary_metrics`` on each malignant category against each benign one (e.g. melanoma vs nevus, the
    question a dermatologist asks of a pigmented lesion), where both hold at least ``at_least`` images.

    Args:
        y_true: 0 or 1 per image.
        p_malignant: the malignant probability per image.
        threshold: the decision threshold.
        groups: each image's group, for the intervals.
        subtypes: each image's category ("" for none).
        at_least: the fewest images of each category for a pair to be scored.

    Returns:
        Metrics by "<malignant category> vs <benign category>"; empty where no pair has enough images.
    """
    y, p, names = np.asarray(y_true, dtype=int), np.asarray(p_malignant), np.asarray(subtypes)
    # A category named like a class (a set with no finer labels) is no category to pair.
    counts = {name: int((names == name).sum()) for name in set(subtypes) - {""} if name.lower() not in CLASS_NAMES}
    big = [name for name, n in counts.items() if n >= at_least]
    malignant = sorted(n for n in big if y[names == n].mean() > 0.5)
    benign = sorted(n for n in big if y[names == n].mean() <= 0.5)
    out = {}
    for m in malignant:
        for b in benign:
            index = np.flatnonzero((names == m) | (names == b))
            out[f"{m} vs {b}"] = binary_metrics(y[index], p[index], threshold, [groups[i] for i in index])
    return out


def collection_metrics(
    y_true: Sequence[int],
    p_malignant: Sequence[float],
    threshold: float,
    groups: Sequence[str],
    collections: Sequence[str],
    at_least: int = 2,
) -> dict[str, dict]:
    """``binary_metrics`` for each collection (clinic, lab, sub-collection; or any other name per image, such as
    a mammogram's view) of a split: a pooled figure can hide a collection the model does badly on.

    Args:
        y_true: 0 or 1 per image.
        p_malignant: the malignant probability per image.
        threshold: the decision threshold.
        groups: each image's group, for the intervals.
        collections: each image's collection ("" for none).
        at_least: how many named collections the split must hold for the figures to be given.

    Returns:
        Metrics by collection; empty where the split names fewer than ``at_least``.
    """
    named = sorted(set(collections) - {""})
    if len(named) < at_least:
        return {}
    y, p, names = np.asarray(y_true), np.asarray(p_malignant), np.asarray(collections)
    out = {}
    for name in named:
        index = np.flatnonzero(names == name)
        out[name] = binary_metrics(y[index], p[index], threshold, [groups[i] for i in index])
    return out


def choose_threshold(y_true: Sequence[int], p_malignant: Sequence[float], rule: str = "youden") -> float:
    """Decision threshold from validation data.

    ``youden`` maximises sensitivity + specificity; ``sensitivity=0.95`` is the highest threshold that
    keeps that sensitivity (missing fewer cancers at the cost of false alarms); a number is used as is.
    The threshold is the middle of the interval of scores that classify validation alike (on perfectly
    separated data: midway between the highest benign and the lowest malignant score). Where several such
    intervals tie for Youden's index, the middle one of them is used (the upper middle for an even count),
    not the one at either end.
    """
    y, p = np.asarray(y_true), np.asarray(p_malignant, dtype=np.float64)
    if rule == "youden" or rule.startswith("sensitivity="):
        fpr, tpr, thresholds = roc_curve(y, p, drop_intermediate=False)
        if rule == "youden":
            j = np.round(tpr - fpr, 12)  # rounding: equal indices computed in different orders tie
            tied = np.flatnonzero(j == j.max())
            i = int(tied[(len(tied) - 1) // 2])
        else:
            i = int(np.flatnonzero(tpr >= float(rule.split("=", 1)[1]))[0])
        # Every cut between this score and the next lower one classifies validation the same way;
        # the midpoint leaves the most margin on both sides (thresholds[0] is +inf, never chosen).
        lower = thresholds[i + 1] if i + 1 < len(thresholds) else 0.0
        best = (thresholds[i] + lower) / 2
    else:
        try:
            best = float(rule)
        except ValueError:
            raise ValueError(f"threshold rule must be 'youden', 'sensitivity=S' or a number, got {rule!r}") from None
        if not 0 < best < 1:
            raise ValueError(f"a fixed threshold must be in (0, 1), got {best}")
    return float(np.clip(best, 1e-6, 1 - 1e-6))


def summarize(m: dict) -> str:
    """One line for logs: n, and each headline metric with its interval where there is one."""

    def one(key: str) -> str:
        if m.get(key) is None:
            return f"{key} n/a"
        ci = m.get(f"{key}_ci")
        return f"{key} {m[key]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    return f"n={m['n']}, " + ", ".join(one(k) for k in ("auc", "accuracy", "sensitivity", "specificity"))
