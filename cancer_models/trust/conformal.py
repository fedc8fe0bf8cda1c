"""Prediction sets that never contradict the decision: the decided class, plus the other class while it stays
plausible.

A set is the class the model decides at its threshold and its most probable class (the same, unless the
threshold sits far from 0.5 and the probability between them), together with every class whose probability
reaches ``1 - qhat``, where ``qhat`` is the split-conformal quantile of ``1 - P(true class)`` on held-out calibration
images (the least ambiguous set-valued classifier, Sadinle et al., 2019). Adding classes only grows the conformal
set, so the guarantee stands: a new image from the same distribution has its true class in the
set with probability at least ``1 - alpha``. The set is never empty and always holds the headline class, and
it holds both classes (*uncertain*) only when the other class is itself plausible at that level.

The level is chosen per model (``choose_alpha``): a model right far more often than ``1 - alpha`` meets the
level with single answers alone; plain split-conformal would then spend its error budget on empty sets,
"neither class" beside a confident probability. The first level of ``ALPHAS`` whose sets do not cover the
calibration images more than ``SLACK`` above nominal is kept, so the stated level is the one the sets deliver,
short of a level whose quantile reaches ``CONFIDENT``: its sets would call answers given with that probability
*uncertain*, because of a few confident mistakes among the calibration images (another lab's tiles), and a 95%
probability that reads "uncertain" says two contradictory things.

Where the calibration images come from several collections (LC25000 and GlaS, ISIC and HAM10000's clinics), the
quantile is the largest of each collection's: a single quantile over the mix covers the easy majority and falls
short on the harder one (a dermoscopy ensemble calibrated over its mix at 90% covered 95% of ISIC test images and
84% of HAM10000's), and an image's collection is not known when it is answered.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

# Candidate miscoverage levels, most permissive first: 90% sets unless the model is too accurate for them.
ALPHAS = (0.1, 0.05, 0.02, 0.01)
SLACK = 0.02
# No level is chosen past the first whose quantile puts the other class beside an answer this probable.
CONFIDENT = 0.95


def conformal_quantile(p_true: Sequence[float], alpha: float, collections: Sequence[str] = ()) -> float:
    """``qhat`` from the probabilities that calibration images got for their true class.

    Args:
        p_true: each calibration image's probability for its true class.
        alpha: the miscoverage level.
        collections: each image's collection (clinic, lab), or nothing. Given, ``qhat`` is the largest of the
            quantile of all images and that of each collection with enough images for the level: the sets then
            cover each such collection at the level, not only the mix, where a harder collection would fall short
            (group-conditional, "Mondrian", conformal prediction, Vovk et al. 2003). Smaller collections count
            in the mix alone.

    Returns:
        The quantile: a class is in a set when its probability is at least ``1 - qhat``.
    """
    scores = 1 - np.asarray(p_true, dtype=np.float64)
    if len(scores) == 0 or not 0 < alpha < 1:
        raise ValueError(f"need calibration images and alpha in (0, 1), got {len(scores)} images and alpha {alpha}")
    if len(collections) not in (0, len(scores)):
        raise ValueError(f"{len(collections)} collection names for {len(scores)} calibration images")
    qhat = _split_quantile(scores, alpha)
    names = np.asarray(collections)
    for name in calibrated_collections(collections, alpha):
        qhat = max(qhat, _split_quantile(scores[names == name], alpha))
    return qhat


def calibrated_collections(collections: Sequence[str], alpha: float) -> list[str]:
    """The collections with enough calibration images for a quantile of their own at ``alpha``: with fewer
    than ``(1 - alpha) / alpha``, theirs would be 1, both classes in every set."""
    return sorted(name for name, n in Counter(collections).items() if np.ceil((n + 1) * (1 - alpha)) <= n)


def _split_quantile(scores: np.ndarray, alpha: float) -> float:
    """The split-conformal quantile of non-conformity ``scores``: 1 where they are too few for the level."""
    n = len(scores)
    level = np.ceil((n + 1) * (1 - alpha)) / n
    return 1.0 if level > 1 else float(np.quantile(scores, level, method="higher"))


def set_membership(probabilities: np.ndarray, threshold: float, qhat: float) -> np.ndarray:
    """(N, 2) booleans: is each class in each image's set? The decided class (malignant, index 1, when its
    probability reaches ``threshold``), the most probable class, and every class with probability at least
    ``1 - qhat``."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    included = probabilities >= 1 - qhat
    rows = np.arange(len(probabilities))
    included[rows, (probabilities[:, 1] >= threshold).astype(int)] = True
    included[rows, probabilities.argmax(axis=1)] = True
    return included


def prediction_set(
    probabilities: Sequence[float], labels: Sequence[str], threshold: float, qhat: float
) -> tuple[str, ...]:
    """One image's prediction set.

    Args:
        probabilities: the image's calibrated probabilities, in ``labels`` order.
        labels: the two class names.
        threshold: the decision threshold on the second (malignant) class.
        qhat: the calibrated quantile (``ConformalSettings.quantile``).

    Returns:
        Its decided class, and the other class too if that one stays plausible at the model's level: both is
        *uncertain*.
    """
    included = set_membership(np.asarray([probabilities]), threshold, qhat)[0]
    return tuple(label for label, keep in zip(labels, included, strict=True) if keep)


def coverage(probabilities: np.ndarray, targets: np.ndarray, threshold: float, qhat: float) -> dict[str, float]:
    """Share of images whose set holds their true class, and the share of sets with one class or both."""
    included = set_membership(probabilities, threshold, qhat)
    both = included.all(axis=1)
    return {
        "coverage": float(included[np.arange(len(targets)), targets].mean()),
        "singleton": float((~both).mean()),
        "both": float(both.mean()),
    }


def choose_alpha(
    probabilities: np.ndarray, targets: np.ndarray, threshold: float, collections: Sequence[str] = ()
) -> tuple[float, float]:
    """The model's level and its quantile: the first of ``ALPHAS`` whose sets cover the calibration images at
    most ``SLACK`` above nominal (the last one if none does), but never one past the first whose quantile reaches
    ``CONFIDENT``. Where ``collections`` are given, the quantile holds on each (``conformal_quantile``) and the
    sets necessarily cover the easier ones more: the level is judged on the collection they cover least, the
    one that sets the quantile."""
    probabilities, targets = np.asarray(probabilities), np.asarray(targets)
    p_true = probabilities[np.arange(len(targets)), targets]
    names = np.asarray(collections)
    chosen: tuple[float, float] | None = None
    for alpha in ALPHAS:
        qhat = conformal_quantile(p_true, alpha, collections)
        if chosen is not None and qhat >= CONFIDENT:
            break
        chosen = alpha, qhat
        parts = [names == c for c in calibrated_collections(collections, alpha)]
        least = min(
            coverage(probabilities[part], targets[part], threshold, qhat)["coverage"]
            for part in [np.ones(len(targets), bool), *parts]
        )
        if least <= 1 - alpha + SLACK:
            break
    assert chosen is not None  # ALPHAS is not empty
    return chosen
