"""Split-conformal prediction sets (least ambiguous set-valued classifier, Sadinle et al., 2019).

Calibrated on held-out images: with ``qhat`` the ceil((n + 1)(1 - alpha)) / n quantile of 1 - P(true class),
the set {classes with P >= 1 - qhat} holds the true class of a new image from the same distribution with
probability at least 1 - alpha. For two classes it holds one class when the model is sure enough, both when
it is not, and none when neither class reaches the calibrated confidence.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def conformal_quantile(p_true: Sequence[float], alpha: float) -> float:
    """``qhat`` from the probabilities that calibration images got for their true class."""
    scores = 1 - np.asarray(p_true, dtype=np.float64)
    n = len(scores)
    if n == 0 or not 0 < alpha < 1:
        raise ValueError(f"need calibration images and alpha in (0, 1), got {n} images and alpha {alpha}")
    level = np.ceil((n + 1) * (1 - alpha)) / n
    return 1.0 if level > 1 else float(np.quantile(scores, level, method="higher"))


def prediction_set(probabilities: Sequence[float], labels: Sequence[str], qhat: float) -> tuple[str, ...]:
    return tuple(label for label, p in zip(labels, probabilities, strict=True) if p >= 1 - qhat)


def coverage(probabilities: np.ndarray, targets: np.ndarray, qhat: float) -> dict[str, float]:
    """Share of images whose set holds their true class, and the share of sets with one, two or no classes."""
    included = probabilities >= 1 - qhat  # (N, classes)
    sizes = included.sum(axis=1)
    return {
        "coverage": float(included[np.arange(len(targets)), targets].mean()),
        "singleton": float((sizes == 1).mean()),
        "both": float((sizes == 2).mean()),
        "empty": float((sizes == 0).mean()),
    }
