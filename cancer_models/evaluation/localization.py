"""Do explanations point at the lesion? Measured against lesion masks (0/255 PNGs at the images' paths), or, for
a mammography model, against the breast that its preprocessing keeps (heat outside the breast points at nothing).

Per image with a non-empty mask: whether the heat map's peak lies inside the lesion (the pointing game),
and the share of the map's heat inside the lesion against the lesion's share of the image (a map that
ignores the lesion scores about that share; one that sees only the lesion scores 1). A fixed Gaussian at the
image centre is scored alongside every method: a map that does no better than it says nothing about the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Image as ImageFeature
from PIL import Image

from ..data.image_sets import load_raw, with_mask_files
from ..data.mammography import breast_mask
from ..errors import DataError
from ..inference.predict import Predictor
from ..models import CancerModel
from ..sources import display_name

CENTRE_PRIOR = "centre prior"
# Methods compared when choosing a model's default (scorecam: one forward pass per channel, too slow to serve).
CANDIDATE_METHODS = ("gradcam", "gradcam++", "layercam", "eigencam")


def load_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Boolean lesion mask of an image of ``size`` (width, height)."""
    if not path.is_file():
        raise DataError(f"no lesion mask {path}")
    mask = Image.open(path).convert("L")
    if mask.size != size:
        raise DataError(f"lesion mask {path} is {mask.size[0]}x{mask.size[1]}, its image {size[0]}x{size[1]}")
    return np.asarray(mask) > 127


def centre_prior(height: int, width: int, sigma: float = 0.25) -> np.ndarray:
    """A Gaussian at the image centre with a standard deviation of ``sigma`` times each side."""
    y = (np.arange(height) - (height - 1) / 2) / (sigma * height)
    x = (np.arange(width) - (width - 1) / 2) / (sigma * width)
    return np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2)).astype(np.float32)


def point_scores(heatmap: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Pointing (peak inside the lesion, 1 or 0) and the share of heat inside it, for one image."""
    peak = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    total = float(heatmap.sum())
    return {
        "peak_in_lesion": float(mask[peak]),
        "heat_in_lesion": float(heatmap[mask].sum() / total) if total > 0 else 0.0,
    }


def _mean_with_ci(values: Sequence[float], n_bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    v = np.asarray(values, dtype=np.float64)
    means = np.random.default_rng(seed).choice(v, (n_bootstrap, len(v))).mean(axis=1)
    return {"mean": float(v.mean()), "ci": [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]}


class ImageScores:
    """Per-image pointing and heat-in-lesion scores, per CAM method and for the centre prior, collected over
    one or more predictors (cross-validation: each fold's model on its held-out images) and then summarised."""

    def __init__(self, methods: Sequence[str]) -> None:
        self.methods = list(methods)
        self.scores: dict[str, list[dict[str, float]]] = {m: [] for m in [*methods, CENTRE_PRIOR]}
        self.lesion_share: list[float] = []
        self.without_lesion = 0

    def add(self, predictor: Predictor, images: Sequence[Path], masks: Sequence[Path] | None) -> None:
        """Score each image's maps against its mask; ``masks`` None: against the breast in the canonical
        mammogram the model looks at (``data.mammography.breast_mask``)."""
        if masks is None and predictor.config.preprocessing != "mammogram":
            raise DataError("the breast is the region only for a mammography model; give lesion masks")
        for i, image in enumerate(images):
            first = predictor.explain(image, method=self.methods[0])
            if masks is None:
                mask = breast_mask(np.asarray(first.image.convert("L")))
            else:
                mask = load_mask(masks[i], first.image.size)
            if not mask.any():
                self.without_lesion += 1
                continue
            self.lesion_share.append(float(mask.mean()))
            self.scores[CENTRE_PRIOR].append(point_scores(centre_prior(*mask.shape), mask))
            for method in self.methods:
                heatmap = (
                    first.heatmap if method == self.methods[0] else predictor.explain(image, method=method).heatmap
                )
                self.scores[method].append(point_scores(heatmap, mask))

    def summary(self) -> dict[str, Any]:
        """Means with 95% bootstrap intervals over the images whose mask is not empty (the others are counted)."""
        if not self.lesion_share:
            raise DataError("no image has a non-empty lesion mask: nothing to measure")
        report = {
            "n": len(self.lesion_share),
            "without_lesion": self.without_lesion,
            "lesion_share": _mean_with_ci(self.lesion_share),
        }
        for name, per_image in self.scores.items():
            report[name] = {key: _mean_with_ci([s[key] for s in per_image]) for key in per_image[0]}
        return report

    def record(self, method: str) -> dict[str, Any]:
        """One method's summary as a model config records it (``training['explanations']``), with the centre
        prior beside it."""
        report = self.summary()
        return {
            "method": method,
            "n": report["n"],
            "lesion_share": report["lesion_share"]["mean"],
            "peak_in_lesion": report[method]["peak_in_lesion"],
            "heat_in_lesion": report[method]["heat_in_lesion"],
            "centre_prior_peak_in_lesion": report[CENTRE_PRIOR]["peak_in_lesion"]["mean"],
            "centre_prior_heat_in_lesion": report[CENTRE_PRIOR]["heat_in_lesion"]["mean"],
        }


def explanation_quality(
    predictor: Predictor, images: Sequence[Path], masks: Sequence[Path] | None, methods: Sequence[str]
) -> dict[str, Any]:
    """Pointing and heat-in-lesion per CAM method and for the centre prior, with 95% bootstrap intervals over
    the images whose mask is not empty (images without a lesion are left out and counted).

    Args:
        predictor: the model to explain, with its preprocessing.
        images: image files.
        masks: each image's lesion mask file, or None to score against the breast of each canonical mammogram.
        methods: CAM methods to compare.

    Returns:
        ``n``, ``without_lesion``, ``lesion_share`` and, per method and for the centre prior, the mean
        ``peak_in_lesion`` and ``heat_in_lesion`` with their intervals.
    """
    scores = ImageScores(methods)
    scores.add(predictor, images, masks)
    return scores.summary()


def choose_cam(
    model: CancerModel,
    images: Sequence[Path],
    masks: Sequence[Path] | None,
    methods: Sequence[str] = CANDIDATE_METHODS,
) -> list[dict[str, Any]]:
    """Set ``model.config``'s ``cam_layers`` and ``cam_method`` to the candidate pair whose map peaks inside the
    lesion most often on these images (ties: more heat inside it); returns every pair's scores, best first. A
    model trained with a mask loss keeps its layers, and only the method is chosen.
    Against the breast (``masks`` None) the share of heat comes first: nearly every map peaks somewhere in a
    breast that fills most of the image, and what matters is how little heat falls outside it.

    Choose on validation images and report on test images: the choice is fitted to the images it is made on.
    """
    rows = []
    # A mask loss trained the maps of the config's layers to point at the lesion (and calibration never moves a
    # mask-trained model off them): the choice is among methods only, a sixth of the work.
    mask_trained = bool(model.config.training.settings.get("mask_loss") and model.config.cam_layers)
    candidates = [model.config.cam_layers] if mask_trained else model.cam_layer_candidates()
    for layers in candidates:
        model.config.cam_layers = layers
        report = explanation_quality(Predictor(model), images, masks, methods)
        for method in methods:
            rows.append(
                {
                    "layers": layers,
                    "method": method,
                    "peak_in_lesion": report[method]["peak_in_lesion"]["mean"],
                    "heat_in_lesion": report[method]["heat_in_lesion"]["mean"],
                }
            )
    order = ("peak_in_lesion", "heat_in_lesion") if masks is not None else ("heat_in_lesion", "peak_in_lesion")
    rows.sort(key=lambda r: tuple(r[k] for k in order), reverse=True)
    model.config.cam_layers, model.config.cam_method = rows[0]["layers"], rows[0]["method"]
    return rows


def images_with_masks(images: Path, masks: Path | None, split: str) -> tuple[list[Path], list[Path] | None]:
    """The image files of ``split`` of the folder ``images`` that have a mask file under ``masks``, and those
    masks (an image set may hold masks for some of its images only); ``masks`` None: every image, the breast of
    each mammogram being the region."""
    raw = load_raw(str(images))
    if split not in raw:
        raise DataError(f"{images} has no {split} split (found {sorted(raw)})")
    paths = [Path(item["path"]) for item in raw[split].cast_column("image", ImageFeature(decode=False))["image"]]
    if masks is None:
        return paths, None
    return with_mask_files(paths, images, masks, f"the {split} split of {images}")


def fit_default_cam(model: CancerModel, images: Path, masks: Path | None) -> dict[str, Any]:
    """Choose the default CAM layers and method on the validation split (``localization.choose_cam``), then
    measure how often that map peaks inside the lesion on the test split, summarised for the card and the app.
    ``masks`` None: the region is the breast of each canonical mammogram, not a lesion."""
    model.config.training.evaluations["cam_choice"] = choose_cam(model, *images_with_masks(images, masks, "validation"))
    scores = ImageScores([model.config.cam_method])
    scores.add(Predictor(model), *images_with_masks(images, masks, "test"))
    return {
        "data": f"{display_name(str(images))} (test)",
        "region": "lesion" if masks is not None else "breast",
        "layers": model.config.cam_layers,
        **scores.record(model.config.cam_method),
    }
