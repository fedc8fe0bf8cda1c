"""Fit what makes a model's answers trustworthy, without retraining: `python -m cancer_models.calibrate
--model DIR --data DIR`.

- Out-of-distribution rejection: a Mahalanobis detector on mid-level features (``ood.py``), fitted on the
  training split, its threshold the validation split's score quantile at ``--acceptance``; with ``--refuse
  DATA...``, also below every validation image of those sets (other modalities the model must not accept).
- Split-conformal prediction sets (``conformal.py``) at level 1 - ``--alpha``, calibrated on the validation
  images the detector accepts.

Both are reported on the test split (share rejected, coverage) and written into the model folder
(config.json, ood.safetensors, the model card). train.py runs the same steps at the end of training.
With ``--masks IMAGES MASKS`` (a folder with validation and test splits, and their lesion masks) it also
chooses the model's default CAM layers and method on the validation images and records how often that map
peaks inside the lesion on the test images (``localization.py``); the card and the app show the figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Image as ImageFeature
from datasets import concatenate_datasets
from sklearn.covariance import LedoitWolf

from .config import TTA_VIEWS
from .conformal import conformal_quantile, coverage
from .data import DataSpec, load_raw, load_splits, mask_path, standardise
from .decoding import DecodedSplit, decode_split
from .errors import CheckpointError, ConfigError, DataError
from .localization import ImageScores, choose_cam
from .model_card import dataset_name
from .models import CancerModel, load_pretrained
from .ood import MahalanobisDetector, tap_features
from .predict import Predictor

DEFAULT_ACCEPTANCE = 0.99
DEFAULT_ALPHA = 0.1
# Training images the rejection detector is fitted on, at most: plenty for a mean and a shrunk covariance.
DETECTOR_SAMPLE = 20_000
REFUSAL_MARGIN = 1e-3


@dataclass
class SplitOutputs:
    probabilities: np.ndarray  # (N, 2), temperature-calibrated
    features: torch.Tensor  # (N, D), pooled ood_layers() outputs
    targets: np.ndarray  # (N,)


def split_outputs(model: CancerModel, split: DecodedSplit, batch_size: int = 64) -> SplitOutputs:
    """The Predictor's probabilities for a decoded split, and the features its forward passes went through."""
    with tap_features(model.ood_layers()) as features:
        probs = Predictor(model, batch_size=batch_size).probabilities(split.images, tta=False)
    return SplitOutputs(probs.numpy(), torch.cat(features).cpu(), split.targets.numpy())


def fit_detector(features: torch.Tensor, targets: np.ndarray) -> MahalanobisDetector:
    """One mean per class and a shared Ledoit-Wolf precision matrix of the class-centred features."""
    x = features.double().numpy()
    classes = np.unique(targets)
    means = np.stack([x[targets == c].mean(axis=0) for c in classes])
    precision = LedoitWolf().fit(x - means[np.searchsorted(classes, targets)]).precision_
    return MahalanobisDetector(torch.from_numpy(means).float(), torch.from_numpy(precision).float())


def fit_trust(
    model: CancerModel,
    splits: dict[str, DecodedSplit],
    acceptance: float = DEFAULT_ACCEPTANCE,
    alpha: float = DEFAULT_ALPHA,
    refuse: dict[str, DecodedSplit] | None = None,
) -> dict[str, Any]:
    """Fit rejection and conformal sets into ``model`` (detector and config); returns what they do on each split.
    The detector is fitted on at most ``DETECTOR_SAMPLE`` training images (a seeded sample of larger sets); with
    ``refuse``, its threshold also stays below every image of those sets (``refuse_sets``)."""
    splits, categories = dict(splits), splits["train"].subtype_counts()
    if len(splits["train"]) > DETECTOR_SAMPLE:
        sample = sorted(np.random.default_rng(0).choice(len(splits["train"]), DETECTOR_SAMPLE, replace=False))
        splits["train"] = splits["train"].subset(sample)
    outputs = {name: split_outputs(model, split) for name, split in splits.items()}
    detector = fit_detector(outputs["train"].features, outputs["train"].targets)
    scores = {name: detector.score(o.features) for name, o in outputs.items()}
    threshold = float(torch.quantile(scores["validation"].double(), acceptance))
    model.ood_detector = detector
    model.config.ood = {"method": "mahalanobis", "threshold": threshold, "acceptance": acceptance}
    if refuse:
        refuse_sets(model, refuse)
        threshold = model.config.ood["threshold"]
    accepted = {name: (s <= threshold).numpy() for name, s in scores.items()}
    val = outputs["validation"]
    ok = accepted["validation"]
    qhat = conformal_quantile(val.probabilities[ok, val.targets[ok]], alpha)
    model.config.conformal = {"alpha": alpha, "qhat": qhat}
    report = {}
    for name, o in outputs.items():
        ok = accepted[name]
        report[name] = {"n": len(ok), "rejected": float(1 - ok.mean())}
        if name != "train" and ok.any():
            report[name].update(coverage(o.probabilities[ok], o.targets[ok], qhat))
    model.config.training["trust"] = report
    if categories:
        model.config.training["subtypes"] = categories
    return report


def refuse_sets(model: CancerModel, sets: dict[str, DecodedSplit]) -> None:
    """Lower the rejection threshold, where needed, below the score of every image in ``sets``: images the model
    must never accept (other modalities' validation splits), which a threshold set on the model's own images
    alone can let through. The config records the sets and the threshold before; refusing again starts from
    that threshold, not from the one an earlier refusal lowered."""
    lowest = {name: float(model.ood_detector.score(split_outputs(model, s).features).min()) for name, s in sets.items()}
    before = model.config.ood.get("threshold_before_refusal", model.config.ood["threshold"])
    # 0.1% below the lowest score: an image scored in another batch differs in the last digits
    threshold = min(before, min(lowest.values()) * (1 - REFUSAL_MARGIN))
    model.config.ood.update(threshold=threshold, refused=lowest, threshold_before_refusal=before)


def images_to_refuse(source: str, size: int) -> DecodedSplit:
    """The images of ``source`` that ``--refuse`` uses: its validation split, or all its images if it has none."""
    raw = load_raw(source)
    names = ["validation"] if "validation" in raw else sorted(raw)
    spec = DataSpec([source])
    return decode_split(concatenate_datasets([standardise(raw[n], spec, f"{source}/{n}", source) for n in names]), size)


def split_trust(model: CancerModel, outputs: SplitOutputs) -> dict[str, Any]:
    """What rejection and prediction sets do on one split (``split_outputs``): the share rejected, and the sets'
    coverage and sizes on the images accepted."""
    accepted = (model.ood_detector.score(outputs.features) <= model.config.ood["threshold"]).numpy()
    report = {"n": len(accepted), "rejected": float(1 - accepted.mean())}
    if accepted.any():
        report.update(
            coverage(outputs.probabilities[accepted], outputs.targets[accepted], model.config.conformal["qhat"])
        )
    return report


def images_with_masks(images: Path, masks: Path, split: str) -> tuple[list[Path], list[Path]]:
    """The image files of ``split`` of the folder ``images`` and their masks' paths under ``masks``."""
    raw = load_raw(str(images))
    if split not in raw:
        raise DataError(f"{images} has no {split} split (found {sorted(raw)})")
    paths = [Path(item["path"]) for item in raw[split].cast_column("image", ImageFeature(decode=False))["image"]]
    return paths, [mask_path(p, images, masks) for p in paths]


def fit_explanations(model: CancerModel, images: Path, masks: Path) -> dict[str, Any]:
    """Choose the default CAM layers and method on the validation split (``localization.choose_cam``), then
    measure how often that map peaks inside the lesion on the test split, summarised for the card and the app."""
    model.config.training["cam_choice"] = choose_cam(model, *images_with_masks(images, masks, "validation"))
    scores = ImageScores([model.config.cam_method])
    scores.add(Predictor(model), *images_with_masks(images, masks, "test"))
    return {
        "data": f"{dataset_name(str(images))} (test)",
        "layers": model.config.cam_layers,
        **scores.record(model.config.cam_method),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cancer_models.calibrate", description=__doc__)
    parser.add_argument("--model", required=True, type=Path, help="model folder (rewritten in place)")
    parser.add_argument("--data", required=True, nargs="+", help="the image set(s) it was trained on")
    parser.add_argument("--acceptance", type=float, default=DEFAULT_ACCEPTANCE, help="validation images to accept")
    parser.add_argument(
        "--alpha", type=float, default=DEFAULT_ALPHA, help="conformal miscoverage (sets hold 1 - alpha)"
    )
    parser.add_argument(
        "--masks",
        nargs=2,
        type=Path,
        metavar=("IMAGES", "MASKS"),
        help="also choose the CAM layers and method that point at lesions best (on the validation split of IMAGES) "
        "and measure them (on its test split); MASKS holds 0/255 PNGs at the images' relative paths",
    )
    parser.add_argument(
        "--refuse",
        nargs="+",
        default=[],
        help="image sets (e.g. the other modalities) the model must reject: the rejection threshold is lowered "
        "below every image of their validation splits (of all their images, for a set without one) if needed",
    )
    parser.add_argument(
        "--tta-views",
        choices=TTA_VIEWS,
        default=None,
        help="the test-time views the model was trained on (default: keep)",
    )
    args = parser.parse_args(argv)
    try:
        model = load_pretrained(args.model)
        size = model.config.input_size
        refuse = {dataset_name(source): images_to_refuse(source, size) for source in args.refuse}
        if "cross_validation" in model.config.training:
            # A cross-validated ensemble was trained on these validation images: its rejection and prediction
            # sets were fitted on out-of-fold predictions (train.py --folds) and stay; only a refusal can
            # lower the threshold, and the test figures are taken again.
            report = model.config.training["trust"]
            if refuse:
                refuse_sets(model, refuse)
                test = decode_split(load_splits(DataSpec(args.data))["test"], size)
                report["test"] = split_trust(model, split_outputs(model, test))
        else:
            decoded = {name: decode_split(ds, size) for name, ds in load_splits(DataSpec(args.data)).items()}
            report = fit_trust(model, decoded, args.acceptance, args.alpha, refuse)
        model.config.tta_views = args.tta_views or model.config.tta_views
        if args.masks:
            tried = model.config.training.get("explanations", {}).get("tried", [])  # the trainer's notes stay
            model.config.training["explanations"] = {**fit_explanations(model, *args.masks), "tried": tried}
    except (CheckpointError, ConfigError, DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model.save_pretrained(args.model)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
