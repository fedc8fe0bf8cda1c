"""Fit what makes a model's answers trustworthy, without retraining (``cancer-models calibrate``): this module
runs the fits of ``trust/`` (each check fitted and scored in its own module) over a model folder's data.

- Out-of-distribution rejection: Mahalanobis distances of mid-level features and of image statistics
  (``trust.ood``, ``trust.distance``), fitted on the training and validation splits, their limits quantiles of
  scores cross-fitted over folds of those splits (each fold scored by a detector fitted on the others) that accept
  ``--acceptance`` of their groups; with ``--refuse DATA...``, also below every validation image of those sets
  (other modalities the model must not accept). A linear *domain* classifier on the same features and
  statistics, taught on the model's images against those sets and ``negatives.reference_negatives``
  (photograph-like scenes and plain images the project draws from a seed; ``trust.domain``), gets a limit the
  same way; colour and texture floors (``trust.floors``); limits per check (``trust.limits``).
- Prediction sets (``trust.conformal``) at the level chosen for the model (or 1 - ``--alpha``), calibrated on the
  validation images the detector accepts, with and without test-time views.

A cross-validated ensemble is fitted the same way on its out-of-fold predictions (``fit_ensemble_trust``).
Both are reported on the test split (share rejected, coverage) and written into the model folder
(config.json, ood.safetensors, the model card). train.py runs the same steps at the end of training.
With ``--masks IMAGES MASKS`` (a folder with validation and test splits, and their lesion masks) it also
chooses the model's default CAM layers and method on the validation images and records how often that map
peaks inside the lesion on the test images (``evaluation.localization.fit_default_cam``); the card and the app
show the figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import concatenate_datasets

from ..data.decoding import DecodedSplit, decode_split
from ..data.image_sets import fold_indices, load_raw, load_splits, pooled_for_folds, standardise
from ..data.spec import DataSpec, recorded_data_spec
from ..errors import DataError
from ..evaluation.localization import fit_default_cam
from ..inference.predict import Predictor
from ..inference.pretrained import load_pretrained
from ..models import CancerModel
from ..reporting.model_folder import save_model_folder
from ..settings import ConformalSettings, TrustSettings
from ..sources import display_name
from ..trust.conformal import (
    CONFIDENT,
    calibrated_collections,
    choose_alpha,
    conformal_quantile,
    coverage,
    set_membership,
)
from ..trust.domain import Negatives
from ..trust.features import image_statistics, tap_features
from ..trust.floors import fit_colour_floor, fit_texture_floor
from ..trust.limits import fit_limits, refusing_factor
from ..trust.limits import unusualness as ratio_to_limits
from ..trust.ood import MahalanobisDetector
from .negatives import reference_negatives

DEFAULT_ACCEPTANCE = 0.99
# Training images the rejection detector is fitted on, at most: plenty for a mean and a shrunk covariance.
DETECTOR_SAMPLE = 20_000
# Folds of train + validation over which a single model's rejection limits are cross-fitted. A validation split
# alone holds about a hundred source images for histopathology: a limit at its 99% quantile is its single most
# unusual source, and the test split's sources, from other tiles, went past it three times as often as 1%.
FOLDS = 5
# How many of ``negatives.reference_negatives``'s images the domain classifier learns from: scenes per kind, crops
# per scene and plain images per kind. Tests that check behaviour rather than figures fit on fewer.
NEGATIVE_COUNTS = {"per_scene": 2, "crops": 120, "per_kind": 20}


@dataclass
class SplitOutputs:
    probabilities: np.ndarray  # (N, 2), temperature-calibrated
    features: torch.Tensor  # (N, D), the rejection check's features (model.ood_features)
    statistics: torch.Tensor  # (N, S), image_statistics()
    targets: np.ndarray  # (N,)
    tta_probabilities: np.ndarray | None = None  # (N, 2) with the config's test-time views, where asked for
    sizes: list[int] | None = None  # the feature columns of each layer
    collections: list[str] = field(default_factory=list)  # each image's collection (clinic, lab), where known

    def subset(self, index: np.ndarray) -> SplitOutputs:
        """The outputs of the images at ``index``."""
        tta = None if self.tta_probabilities is None else self.tta_probabilities[index]
        collections = [self.collections[i] for i in index] if self.collections else []
        rows = torch.as_tensor(index, dtype=torch.long)
        return SplitOutputs(
            self.probabilities[index], self.features[rows], self.statistics[rows], self.targets[index], tta,
            self.sizes, collections,
        )  # fmt: skip


def _forward(predictor: Predictor, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Probabilities without test-time views, the rejection check's features from the same forward passes, and
    the feature columns of each layer."""
    model = predictor.model
    with tap_features(model.ood_layers()) as tapped:
        probs = predictor.probabilities(images, tta=False)
    return probs, *model.ood_features(torch.cat(tapped).cpu(), tapped.sizes)


def batch_features(model: CancerModel, batch: torch.Tensor, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The rejection check's features and the image statistics of a uint8 batch (N, 3, S, S)."""
    _, features, _ = _forward(Predictor(model, batch_size=batch_size), batch)
    return features, image_statistics(batch)


def split_outputs(model: CancerModel, split: DecodedSplit, batch_size: int = 64, tta: bool = False) -> SplitOutputs:
    """The Predictor's probabilities for a decoded split (with and, if ``tta``, without test-time views), the
    features its forward passes went through and the images' statistics."""
    predictor = Predictor(model, batch_size=batch_size)
    probs, features, sizes = _forward(predictor, split.images)
    # 256 images at a time: a split read from the disk cache is never loaded whole
    statistics = torch.cat([image_statistics(split.images[i : i + 256]) for i in range(0, len(split), 256)])
    return SplitOutputs(
        probs.numpy(),
        features,
        statistics,
        split.targets.numpy(),
        predictor.probabilities(split.images, tta=True).numpy() if tta else None,
        sizes,
        list(split.collections),
    )


def unusualness(model: CancerModel, outputs: SplitOutputs) -> np.ndarray:
    """Each image's largest distance as a multiple of its limit (``ood.py``): above 1 is refused."""
    scores = model.ood_detector.scores(outputs.features, outputs.statistics)
    return ratio_to_limits(scores, outputs.statistics, model.config.ood).numpy()


def fit_sets(model: CancerModel, outputs: SplitOutputs, accepted: np.ndarray, alpha: float | None) -> None:
    """Prediction sets (``conformal.py``) on the accepted calibration images, at ``alpha`` or at the level
    chosen for the model, with and without test-time views, calibrated to hold on each collection (clinic, lab)
    of those images large enough for the level."""
    probs, targets, threshold = outputs.probabilities[accepted], outputs.targets[accepted], model.config.threshold
    collections = np.asarray(outputs.collections)[accepted].tolist() if outputs.collections else []
    if alpha is None:
        alpha, qhat = choose_alpha(probs, targets, threshold, collections)
    else:
        qhat = conformal_quantile(probs[np.arange(len(targets)), targets], alpha, collections)
    qhat_tta = None
    if outputs.tta_probabilities is not None:
        tta = outputs.tta_probabilities[accepted]
        qhat_tta = conformal_quantile(tta[np.arange(len(targets)), targets], alpha, collections)
    held = calibrated_collections(collections, alpha) if len(set(collections)) > 1 else []
    model.config.conformal = ConformalSettings(alpha, qhat, qhat_tta, held)


def fit_trust(
    model: CancerModel,
    splits: dict[str, DecodedSplit],
    acceptance: float = DEFAULT_ACCEPTANCE,
    alpha: float | None = None,
    refuse: dict[str, DecodedSplit] | None = None,
    layers_over_collections: bool = False,
) -> dict[str, Any]:
    """Fit rejection and prediction sets into ``model`` (detector and config); returns what they do on each
    split. The detector is fitted on the validation split and at most ``DETECTOR_SAMPLE`` training images (a
    seeded sample of larger sets), its limits cross-fitted over ``FOLDS`` folds of them (``fit_rejection``; with
    ``layers_over_collections``, the layer limits over the images' collections); with ``refuse``, the limit also
    stays below every image of those sets (``refuse_sets``). The sets are calibrated on the accepted validation
    images."""
    splits, categories = dict(splits), splits["train"].subtype_counts()
    if len(splits["train"]) > DETECTOR_SAMPLE:
        sample = sorted(np.random.default_rng(0).choice(len(splits["train"]), DETECTOR_SAMPLE, replace=False))
        splits["train"] = splits["train"].subset(sample)
    outputs = {name: split_outputs(model, split, tta=name != "train") for name, split in splits.items()}
    refused = {name: split_outputs(model, split) for name, split in (refuse or {}).items()}
    train, val = outputs["train"], outputs["validation"]
    groups = [*splits["train"].groups, *splits["validation"].groups]
    targets = np.concatenate([train.targets, val.targets])
    folds = fold_indices(targets.tolist(), groups, min(FOLDS, len(set(groups))), seed=0)
    model.ood_detector, model.config.ood = fit_rejection(
        torch.cat([train.features, val.features]),
        torch.cat([train.statistics, val.statistics]),
        targets,
        groups,
        train.sizes,
        folds,
        acceptance,
        domain_negatives(model, refused),
        [*train.collections, *val.collections] if layers_over_collections else None,
    )
    model.config.ood.features = "member mean" if model.config.architecture == "ensemble" else "model"
    if refused:
        refuse_sets(model, refused)
    accepted = {name: unusualness(model, o) <= 1 for name, o in outputs.items()}
    fit_sets(model, val, accepted["validation"], alpha)
    report = {name: trust_report(model, o, accepted[name], with_sets=name != "train") for name, o in outputs.items()}
    model.config.training.trust = report
    if categories:
        model.config.training.subtypes = categories
    return report


def fit_rejection(
    features: torch.Tensor,
    statistics: torch.Tensor,
    targets: np.ndarray,
    groups: list[str],
    sizes: list[int],
    folds: list[tuple[np.ndarray, np.ndarray]],
    acceptance: float,
    negatives: Negatives | None = None,
    collections: list[str] | None = None,
) -> tuple[MahalanobisDetector, TrustSettings]:
    """The detector fitted on all the images given, and its limits (``config.ood``) from scores cross-fitted
    over ``folds`` (each held-out fold scored by a detector fitted on the others), so that no limit is set on
    the images its detector was fitted on, and it rests on every group given rather than on one split's few.

    Given ``collections`` (labs, clinics; two or more), the feature layers' scores are cross-fitted over
    collections instead (``layer_scores_over_collections``): in those features another lab's stain lies as far
    from the training images as another modality does (65% of a left-out lab's H&E tiles were refused on the
    layers alone), so their limits accept each collection as a detector fitted without it scores it. Other kinds
    of image are then left to the image statistics, the domain score and the floors, which keep limits over
    groups, and ``refuse_sets`` lowers the layer limits again wherever those let one of the other modalities'
    validation images through. That held for histopathology (no foreign development image accepted); a
    dermoscopy model, whose layers are what refuse fundus photographs, accepted twice as many foreign images.

    Args:
        features: (N, D) the rejection check's features (``model.ood_features``).
        statistics: (N, S) ``image_statistics`` of the same images.
        targets: (N,) their classes; groups: their groups (near-copies of one source image).
        sizes: the feature columns of each layer.
        folds: (fitted, held-out) index pairs that hold every image out once (``fold_indices``).
        acceptance: the share of groups the limits accept.
        negatives: images the model must refuse, for the domain classifier (every fold's classifier learns
            from all of them: the limit is set on the model's own images alone).
        collections: each image's collection (lab, clinic), to set the layer limits over; None: over groups.
    """
    scores = None
    for keep, held_out in folds:
        fold_detector = MahalanobisDetector.fit(features[keep], targets[keep], statistics[keep], sizes, negatives)
        held = fold_detector.scores(features[held_out], statistics[held_out])
        scores = torch.zeros(len(targets), held.shape[1]) if scores is None else scores
        scores[held_out] = held
    over_collections = sorted(set(collections or []))
    if len(over_collections) > 1:
        scores[:, : len(sizes)] = layer_scores_over_collections(features, targets, sizes, collections)
    ood = TrustSettings(
        **fit_limits(scores, groups, acceptance, len(sizes)),
        layers_over_collections=over_collections if len(over_collections) > 1 else [],
        colour_floor=fit_colour_floor(statistics, groups, acceptance),
        texture_floor=fit_texture_floor(statistics, groups, acceptance),
        domain_negatives=negatives.counts if negatives is not None else {},
    )
    return MahalanobisDetector.fit(features, targets, statistics, sizes, negatives), ood


def layer_scores_over_collections(
    features: torch.Tensor, targets: np.ndarray, sizes: list[int], collections: list[str]
) -> torch.Tensor:
    """(N, layers) each image's feature-layer distances under Gaussians fitted on the other collections' images
    alone: how far a lab or clinic lies from the others, the spread a new one can be expected to have."""
    names = np.asarray(collections)
    scores = torch.zeros(len(targets), len(sizes))
    for name in sorted(set(collections)):
        own = torch.from_numpy(names == name)
        others = MahalanobisDetector.fit_layers(features[~own], targets[~own.numpy()], sizes)
        scores[own] = others.scores(features[own])
    return scores


def domain_negatives(model: CancerModel, refused: dict[str, SplitOutputs]) -> Negatives:
    """What the domain classifier learns to refuse: the ``refused`` sets (other modalities) and the scenes and
    generated images of ``reference_negatives``."""
    batch, counts = reference_negatives(model.config.input_size, model.config.preprocessing, **NEGATIVE_COUNTS)
    features, statistics = batch_features(model, batch)
    return Negatives(
        torch.cat([features, *(o.features for o in refused.values())]),
        torch.cat([statistics, *(o.statistics for o in refused.values())]),
        {**counts, **{name: len(o.targets) for name, o in refused.items()}},
    )


def refuse_sets(model: CancerModel, sets: dict[str, SplitOutputs]) -> None:
    """Lower the feature limits, in proportion and where needed, until every image of ``sets`` (``split_outputs``)
    that the image statistics, the domain score and the floors do not refuse is refused: images the model
    must never accept (other modalities' validation splits), which limits set on the model's own images alone
    can let through. The config records the sets and the limits before."""
    ood = model.config.ood
    before = list(ood.layer_limits)  # fresh from fit_rejection
    factor = min(
        refusing_factor(model.ood_detector.scores(o.features, o.statistics), o.statistics, ood) for o in sets.values()
    )
    ood.layer_limits, ood.refused, ood.layer_limits_before_refusal = [t * factor for t in before], sorted(sets), before


def fit_ensemble_trust(
    ensemble: CancerModel,
    pooled: DecodedSplit,
    seed: int,
    acceptance: float = DEFAULT_ACCEPTANCE,
    alpha: float | None = None,
    refuse: dict[str, DecodedSplit] | None = None,
    layers_over_collections: bool = False,
) -> dict[str, Any]:
    """Rejection and prediction sets for the ensemble of a cross-validation run over ``pooled`` (train +
    validation, cut into folds with ``seed``), whose member k did not train on fold k; ``layers_over_collections``
    as for ``fit_trust``.

    The detector uses the members' features averaged; its limits come from scores cross-fitted over the folds (each
    fold scored by a detector fitted on the others), so that they are not set on the images it was fitted on.
    The sets are calibrated on out-of-fold probabilities (each image scored by the member that did not train
    on it, at the ensemble's temperature), with and without test-time views."""
    config, members = ensemble.config, list(ensemble.members)
    ensemble.ood_detector, config.ood = None, None  # refitted from scratch, on the members' mean features
    targets, n = pooled.targets.numpy(), len(pooled)
    outputs = split_outputs(ensemble, pooled)
    folds = fold_indices(targets.tolist(), pooled.groups, len(members), seed)
    oof = {False: np.zeros((n, 2)), True: np.zeros((n, 2))}
    for k, (_, held_out) in enumerate(folds):
        members[k].config.tta_views = config.tta_views
        for tta, out in oof.items():  # the member's softmax, then the ensemble's temperature on its log
            raw = Predictor(members[k]).probabilities(pooled.subset(held_out).images, tta=tta).double()
            out[held_out] = (raw.clamp_min(1e-12).log() / config.temperature).softmax(dim=1).numpy()
    refused = {name: split_outputs(ensemble, split) for name, split in (refuse or {}).items()}
    ensemble.ood_detector, config.ood = fit_rejection(
        outputs.features,
        outputs.statistics,
        targets,
        pooled.groups,
        outputs.sizes,
        folds,
        acceptance,
        domain_negatives(ensemble, refused),
        outputs.collections if layers_over_collections else None,
    )
    config.ood.features = "member mean"
    if refused:
        refuse_sets(ensemble, refused)
    outputs.probabilities, outputs.tta_probabilities = oof[False], oof[True]
    accepted = unusualness(ensemble, outputs) <= 1
    fit_sets(ensemble, outputs, accepted, alpha)
    return {"calibrated_on": "out-of-fold predictions", "out_of_fold": trust_report(ensemble, outputs, accepted)}


def images_to_refuse(source: str, size: int, preprocessing: str = "none") -> DecodedSplit:
    """The images of ``source`` that ``--refuse`` uses: its validation split, or all its images if it has none."""
    raw = load_raw(source)
    names = ["validation"] if "validation" in raw else sorted(raw)
    spec = DataSpec([source])
    images = concatenate_datasets([standardise(raw[n], spec, f"{source}/{n}", source) for n in names])
    return decode_split(images, size, preprocessing=preprocessing)


def trust_report(
    model: CancerModel, outputs: SplitOutputs, accepted: np.ndarray | None = None, with_sets: bool = True
) -> dict[str, Any]:
    """What rejection and prediction sets do on one split (``split_outputs``): the share rejected, and on the
    images accepted the sets' coverage and sizes (with test-time views too, where computed), and the share
    *uncertain* among answers whose top class has probability ``CONFIDENT`` (0.95) or more; where the split
    holds several collections (clinics, labs), the same for each (``per_collection``): coverage on the mix can
    hide a collection whose sets fall short."""
    if accepted is None:
        accepted = unusualness(model, outputs) <= 1
    report: dict[str, Any] = {"n": len(accepted), "rejected": float(1 - accepted.mean())}
    if len(set(outputs.collections)) > 1:
        names = np.asarray(outputs.collections)
        report["per_collection"] = {
            c: trust_report(model, outputs.subset(np.flatnonzero(names == c)), accepted[names == c], with_sets)
            for c in sorted(set(outputs.collections))
        }
    if not (with_sets and accepted.any() and model.config.conformal):
        return report
    conformal, threshold, targets = model.config.conformal, model.config.threshold, outputs.targets[accepted]
    views = {"": (outputs.probabilities, conformal.quantile(tta=False))}
    if outputs.tta_probabilities is not None:
        views["tta_"] = (outputs.tta_probabilities, conformal.quantile(tta=True))
    for prefix, (probs, qhat) in views.items():
        probs = probs[accepted]
        sets = coverage(probs, targets, threshold, qhat)
        confident = probs.max(axis=1) >= CONFIDENT
        both = set_membership(probs, threshold, qhat).all(axis=1)
        sets["uncertain_when_confident"] = float(both[confident].mean()) if confident.any() else 0.0
        report.update({prefix + k: v for k, v in sets.items()})
    return report


def training_seed(model: CancerModel) -> int:
    """The seed of the recorded training settings (train.py's default, 0, where they give none)."""
    return int(model.config.training.settings.get("seed", 0))


def check_same_images(model: CancerModel, counts: list[int]) -> None:
    """Raise a DataError unless train + validation hold as many images of each class as the ensemble's members
    were trained on: images added to the data since would fall in folds their members trained on, and the
    "out-of-fold" predictions the trust is fitted on would not be."""
    recorded = (model.config.training.class_counts or {}).get("train + validation")
    if recorded is not None and list(recorded) != counts:
        raise DataError(
            f"the data's train and validation splits hold {counts[0]} benign and {counts[1]} malignant images, "
            f"the ensemble was trained on {recorded[0]} and {recorded[1]}: its folds cannot be rebuilt, so it "
            "cannot be calibrated out of fold on this data; calibrate it on the data it was trained on, or retrain"
        )


def calibrate_folder(
    folder: Path,
    data: list[str],
    acceptance: float = DEFAULT_ACCEPTANCE,
    alpha: float | None = None,
    refuse: list[str] = (),
    masks: tuple[Path, Path | None] | None = None,
    settings: dict[str, Any] | None = None,
    layers_over_collections: bool = False,
) -> dict[str, Any]:
    """Fit a trained model folder's trust again, without retraining, and rewrite the folder.

    Args:
        folder: the model folder.
        data: the image sets it was trained on (split as its training run split them).
        acceptance: the share of held-out groups the rejection limits accept.
        alpha: the prediction sets' miscoverage; None: the first level whose sets are not too wide.
        refuse: image sets (other modalities) every limit must also refuse.
        masks: an image set and its lesion masks (None: no mask files, the breast of a mammogram), to choose the
            default CAM on validation and measure it on test; a mammography model is always measured so.
        settings: config fields to replace first (e.g. ``tta_views``, ``tile``).
        layers_over_collections: set the feature-layer limits on each collection of the training images as a
            detector fitted without it scores it (``fit_rejection``): for labs whose stains differ, where the
            other checks refuse other kinds of image on their own.

    Returns:
        The trust report per split: the share refused, and the prediction sets' coverage and sizes.
    """
    model = load_pretrained(folder)
    for key, value in (settings or {}).items():
        setattr(model.config, key, value)
    model.config.validate()
    size, prep = model.config.input_size, model.config.preprocessing
    to_refuse = {display_name(source): images_to_refuse(source, size, prep) for source in refuse}
    # The splits as training made them (its seed and fractions, for sources without split folders).
    splits = load_splits(recorded_data_spec(model.config.training, data, {}))
    if model.config.training.cross_validation:
        # A cross-validated ensemble trained on these validation images: its trust is fitted out of fold.
        pooled = pooled_for_folds(splits)
        check_same_images(model, np.bincount(pooled["target"], minlength=2).tolist())
        pooled = decode_split(pooled, size, preprocessing=prep)
        report = fit_ensemble_trust(
            model, pooled, training_seed(model), acceptance, alpha, to_refuse, layers_over_collections
        )
        test = decode_split(splits["test"], size, preprocessing=prep)
        report["test"] = trust_report(model, split_outputs(model, test, tta=True))
        model.config.training.trust = report
    else:
        decoded = {name: decode_split(ds, size, preprocessing=prep) for name, ds in splits.items()}
        report = fit_trust(model, decoded, acceptance, alpha, to_refuse, layers_over_collections)
    if masks is None and prep == "mammogram":
        masks = (Path(data[0]), None)  # a mammogram's region is its breast: no mask files needed
    if masks:
        model.config.training.explanations = fit_default_cam(model, *masks)
    save_model_folder(model, folder)
    return report
