"""Fit what makes a model's answers trustworthy, without retraining (``cancer-models calibrate``).

- Out-of-distribution rejection: Mahalanobis distances of mid-level features and of image statistics
  (``ood.py``), fitted on the training and validation splits, their limits quantiles of scores cross-fitted
  over folds of those splits (each fold scored by a detector fitted on the others) that accept
  ``--acceptance`` of their groups; with ``--refuse DATA...``, also below every validation image of those sets
  (other modalities the model must not accept). A linear *domain* classifier on the same features and
  statistics, taught on the model's images against those sets and ``negatives.reference_negatives``
  (photograph-like scenes and plain images the project draws from a seed), gets a limit the same way.
- Prediction sets (``conformal.py``) at the level chosen for the model (or 1 - ``--alpha``), calibrated on the
  validation images the detector accepts, with and without test-time views.

A cross-validated ensemble is fitted the same way on its out-of-fold predictions (``fit_ensemble_trust``).
Both are reported on the test split (share rejected, coverage) and written into the model folder
(config.json, ood.safetensors, the model card). train.py runs the same steps at the end of training.
With ``--masks IMAGES MASKS`` (a folder with validation and test splits, and their lesion masks) it also
chooses the model's default CAM layers and method on the validation images and records how often that map
peaks inside the lesion on the test images (``localization.py``); the card and the app show the figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Image as ImageFeature
from datasets import concatenate_datasets
from sklearn.covariance import LedoitWolf
from sklearn.linear_model import LogisticRegression

from ..data.decoding import DecodedSplit, decode_split
from ..data.image_sets import fold_indices, load_raw, load_splits, mask_path, pooled_for_folds, standardise
from ..data.spec import DataSpec, recorded_data_spec
from ..errors import DataError
from ..evaluation.localization import ImageScores, choose_cam
from ..inference.predict import Predictor
from ..models import CancerModel, load_pretrained
from ..settings import ConformalSettings, TrustSettings
from ..sources import display_name
from ..trust.conformal import choose_alpha, conformal_quantile, coverage, set_membership
from ..trust.ood import (
    Domain,
    Gaussian,
    MahalanobisDetector,
    colour_ratio,
    colourfulness,
    image_statistics,
    tap_features,
    texture,
    texture_ratio,
)
from ..trust.ood import unusualness as ratio_to_limits
from .negatives import reference_negatives

DEFAULT_ACCEPTANCE = 0.99
# Training images the rejection detector is fitted on, at most: plenty for a mean and a shrunk covariance.
DETECTOR_SAMPLE = 20_000
# Folds of train + validation over which a single model's rejection limits are cross-fitted. A validation split
# alone holds about a hundred source images for histopathology: a limit at its 99% quantile is its single most
# unusual source, and the test split's sources, from other tiles, went past it three times as often as 1%.
FOLDS = 5
REFUSAL_MARGIN = 1e-3
STATISTICS_FLOOR = 1e-3  # smallest spread of an image statistic: a constant one would give infinite distances
# The image-statistics limit is this many times its held-out quantile. Another modality, a photograph or a grey
# copy lies tens to hundreds of times further than held-out images of the model's own kind (5.8x at the least
# for the histopathology model's foreign development set), while another stain batch or exposure of the right
# kind of image moves these statistics a few times: the margin spares the latter and costs nothing on the former.
IMAGE_MARGIN = 2.0
# The colour and texture floors are the least colourful (least textured) held-out group's value at the acceptance
# quantile divided by this: a faded, pale or blurred image of the right kind passes, a grey (colourfulness 0) or
# flat one (texture 0) never does.
FLOOR_MARGIN = 2.0
# Inverse regularisation of the domain classifier (on standardised columns): strong, so that it learns the broad
# directions in which foreign images differ rather than the particular negatives it was shown.
DOMAIN_C = 0.1
# How many of ``negatives.reference_negatives``'s images the domain classifier learns from: scenes per kind, crops
# per scene and plain images per kind. Tests that check behaviour rather than figures fit on fewer.
NEGATIVE_COUNTS = {"per_scene": 2, "crops": 120, "per_kind": 20}


@dataclass
class Negatives:
    """Images the model must refuse, as the domain classifier sees them, and how many of each kind."""

    features: torch.Tensor  # (N, D)
    statistics: torch.Tensor  # (N, S)
    counts: dict[str, int]


@dataclass
class SplitOutputs:
    probabilities: np.ndarray  # (N, 2), temperature-calibrated
    features: torch.Tensor  # (N, D), the rejection check's features (model.ood_features)
    statistics: torch.Tensor  # (N, S), image_statistics()
    targets: np.ndarray  # (N,)
    tta_probabilities: np.ndarray | None = None  # (N, 2) with the config's test-time views, where asked for
    sizes: list[int] | None = None  # the feature columns of each layer


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
    chunks = [split.images[i : i + 256] for i in range(0, len(split), 256)]  # tensors, also from a disk cache
    return SplitOutputs(
        probs.numpy(),
        features,
        torch.cat([image_statistics(chunk) for chunk in chunks]),
        split.targets.numpy(),
        torch.cat([predictor.probabilities(chunk, tta=True) for chunk in chunks]).numpy() if tta else None,
        sizes,
    )


def _gaussian(x: np.ndarray, targets: np.ndarray | None = None) -> Gaussian:
    """Class means and a Ledoit-Wolf precision of the class-centred columns; without ``targets``, one mean and
    the columns standardised first (image statistics have unrelated scales), folded back in:
    diag(1/spread) P diag(1/spread)."""
    classes = np.unique(targets) if targets is not None else np.zeros(1)
    labels = targets if targets is not None else np.zeros(len(x))
    means = np.stack([x[labels == c].mean(axis=0) for c in classes])
    centred = x - means[np.searchsorted(classes, labels)]
    spread = np.maximum(centred.std(axis=0), STATISTICS_FLOOR) if targets is None else np.ones(x.shape[1])
    precision = LedoitWolf().fit(centred / spread).precision_ / np.outer(spread, spread)
    return Gaussian(torch.from_numpy(means).float(), torch.from_numpy(precision).float())


def fit_detector(
    features: torch.Tensor,
    targets: np.ndarray,
    statistics: torch.Tensor,
    sizes: list[int],
    negatives: Negatives | None = None,
) -> MahalanobisDetector:
    """One class-conditional distance per feature layer, one class-free distance on the image statistics, and
    with ``negatives`` the domain classifier (``fit_domain``)."""
    parts = [_gaussian(x.double().numpy(), targets) for x in features.split(sizes, dim=1)]
    domain = fit_domain(features, statistics, negatives) if negatives is not None else None
    return MahalanobisDetector(parts, list(sizes), _gaussian(statistics.double().numpy()), domain)


def fit_domain(features: torch.Tensor, statistics: torch.Tensor, negatives: Negatives) -> Domain:
    """A logistic regression of "not the model's kind" on standardised [features, statistics], the model's
    images against ``negatives`` (classes weighted equally), with the standardisation folded into its weights."""
    own = torch.cat([features, statistics], dim=1).double().numpy()
    other = torch.cat([negatives.features, negatives.statistics], dim=1).double().numpy()
    x = np.concatenate([own, other])
    mean, spread = x.mean(axis=0), np.maximum(x.std(axis=0), STATISTICS_FLOOR)
    classifier = LogisticRegression(C=DOMAIN_C, class_weight="balanced", max_iter=5000)
    classifier.fit((x - mean) / spread, np.r_[np.zeros(len(own)), np.ones(len(other))])
    weight = classifier.coef_[0] / spread
    bias = classifier.intercept_[0] - float(weight @ mean)
    return Domain(torch.from_numpy(weight).float(), torch.tensor(bias, dtype=torch.float32))


def fit_limits(scores: torch.Tensor, groups: list[str], acceptance: float, layers: int) -> dict[str, Any]:
    """Limits for the columns of ``MahalanobisDetector.scores`` (``layers`` layers, the image statistics, then
    the domain score where fitted), each at the same quantile of held-out scores (the image statistics' times
    ``IMAGE_MARGIN``): the lowest quantile that accepts every image of ``acceptance`` of the held-out groups on
    all counts.

    Quantiles are taken over groups (near-copies of one source image, each scored by its most unusual copy):
    a split whose images come eight to a source has a few dozen sources, and a limit set on images would rest
    on the single most unusual of them."""
    worst = torch.stack([_group_max(column, groups) for column in scores.T], dim=1)  # (groups, columns)
    margin = torch.ones(worst.shape[1], dtype=torch.float64)
    margin[layers] = IMAGE_MARGIN
    for q in np.linspace(acceptance, 1.0, 101):
        bounds = torch.quantile(worst, q, dim=0) * margin
        if (worst <= bounds).all(dim=1).double().mean() >= acceptance:
            break
    bounds = bounds.tolist()
    return {
        "layer_limits": bounds[:layers],
        "image_limit": bounds[layers],
        "domain_limit": bounds[layers + 1] if len(bounds) > layers + 1 else None,
        "acceptance": acceptance,
        "quantile": float(q),
        "over": "groups",
    }


def fit_colour_floor(statistics: torch.Tensor, groups: list[str], acceptance: float) -> float:
    """The least colour an image may have (``ood.colourfulness``): the ``1 - acceptance`` quantile of the
    held-out groups' least colourful images, divided by ``FLOOR_MARGIN``. About 0 for a grey modality, whose
    check it leaves as it was."""
    return _floor(colourfulness(statistics), groups, acceptance)


def fit_texture_floor(statistics: torch.Tensor, groups: list[str], acceptance: float) -> float:
    """The least fine texture an image may have (``ood.texture``), fitted as the colour floor is."""
    return _floor(texture(statistics), groups, acceptance)


def _floor(values: torch.Tensor, groups: list[str], acceptance: float) -> float:
    least = -_group_max(-values.double(), groups)
    return float(torch.quantile(least, 1 - acceptance)) / FLOOR_MARGIN


def _group_max(scores: torch.Tensor, groups: list[str]) -> torch.Tensor:
    index = {g: k for k, g in enumerate(dict.fromkeys(groups))}
    keys = torch.tensor([index[g] for g in groups])
    return torch.full((len(index),), -torch.inf, dtype=torch.float64).scatter_reduce(
        0, keys, scores.double(), reduce="amax"
    )


def unusualness(model: CancerModel, outputs: SplitOutputs) -> np.ndarray:
    """Each image's largest distance as a multiple of its limit (``ood.py``): above 1 is refused."""
    scores = model.ood_detector.scores(outputs.features, outputs.statistics)
    return ratio_to_limits(scores, outputs.statistics, model.config.ood).numpy()


def fit_sets(model: CancerModel, outputs: SplitOutputs, accepted: np.ndarray, alpha: float | None) -> None:
    """Prediction sets (``conformal.py``) on the accepted calibration images, at ``alpha`` or at the level
    chosen for the model, with and without test-time views."""
    probs, targets, threshold = outputs.probabilities[accepted], outputs.targets[accepted], model.config.threshold
    if alpha is None:
        alpha, qhat = choose_alpha(probs, targets, threshold)
    else:
        qhat = conformal_quantile(probs[np.arange(len(targets)), targets], alpha)
    qhat_tta = None
    if outputs.tta_probabilities is not None:
        tta = outputs.tta_probabilities[accepted]
        qhat_tta = conformal_quantile(tta[np.arange(len(targets)), targets], alpha)
    model.config.conformal = ConformalSettings(alpha, qhat, qhat_tta)


def fit_trust(
    model: CancerModel,
    splits: dict[str, DecodedSplit],
    acceptance: float = DEFAULT_ACCEPTANCE,
    alpha: float | None = None,
    refuse: dict[str, DecodedSplit] | None = None,
) -> dict[str, Any]:
    """Fit rejection and prediction sets into ``model`` (detector and config); returns what they do on each
    split. The detector is fitted on the validation split and at most ``DETECTOR_SAMPLE`` training images (a
    seeded sample of larger sets), its limits cross-fitted over ``FOLDS`` folds of them (``fit_rejection``);
    with ``refuse``, the limit also stays below every image of those sets (``refuse_sets``). The sets are
    calibrated on the accepted validation images."""
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
) -> tuple[MahalanobisDetector, TrustSettings]:
    """The detector fitted on all the images given, and its limits (``config.ood``) from scores cross-fitted
    over ``folds`` (each held-out fold scored by a detector fitted on the others), so that no limit is set on
    the images its detector was fitted on, and it rests on every group given rather than on one split's few.

    Args:
        features: (N, D) the rejection check's features (``model.ood_features``).
        statistics: (N, S) ``image_statistics`` of the same images.
        targets: (N,) their classes; groups: their groups (near-copies of one source image).
        sizes: the feature columns of each layer.
        folds: (fitted, held-out) index pairs that hold every image out once (``fold_indices``).
        acceptance: the share of groups the limits accept.
        negatives: images the model must refuse, for the domain classifier (every fold's classifier learns
            from all of them: the limit is set on the model's own images alone).
    """
    scores = None
    for keep, held_out in folds:
        fold_detector = fit_detector(features[keep], targets[keep], statistics[keep], sizes, negatives)
        held = fold_detector.scores(features[held_out], statistics[held_out])
        scores = torch.zeros(len(targets), held.shape[1]) if scores is None else scores
        scores[held_out] = held
    ood = TrustSettings(
        **fit_limits(scores, groups, acceptance, len(sizes)),
        colour_floor=fit_colour_floor(statistics, groups, acceptance),
        texture_floor=fit_texture_floor(statistics, groups, acceptance),
        domain_negatives=negatives.counts if negatives is not None else {},
    )
    return fit_detector(features, targets, statistics, sizes, negatives), ood


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
    layers, factor = len(before), 1.0
    for outputs in sets.values():
        ratios = model.ood_detector.scores(outputs.features, outputs.statistics) / torch.tensor(ood.limits())
        floors = torch.maximum(colour_ratio(outputs.statistics, ood), texture_ratio(outputs.statistics, ood))
        passes_others = (ratios[:, layers:] <= 1).all(dim=1) & (floors <= 1)
        features_only = ratios[passes_others, :layers].max(dim=1).values
        if len(features_only):
            # 0.1% below the lowest: an image scored in another batch differs in the last digits
            factor = min(factor, float(features_only.min()) * (1 - REFUSAL_MARGIN))
    ood.layer_limits, ood.refused, ood.layer_limits_before_refusal = [t * factor for t in before], sorted(sets), before


def fit_ensemble_trust(
    ensemble: CancerModel,
    pooled: DecodedSplit,
    seed: int,
    acceptance: float = DEFAULT_ACCEPTANCE,
    alpha: float | None = None,
    refuse: dict[str, DecodedSplit] | None = None,
) -> dict[str, Any]:
    """Rejection and prediction sets for the ensemble of a cross-validation run over ``pooled`` (train +
    validation, cut into folds with ``seed``), whose member k did not train on fold k.

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
    *uncertain* among answers whose top class has probability 0.95 or more."""
    if accepted is None:
        accepted = unusualness(model, outputs) <= 1
    report = {"n": len(accepted), "rejected": float(1 - accepted.mean())}
    if not (with_sets and accepted.any() and model.config.conformal):
        return report
    conformal, threshold, targets = model.config.conformal, model.config.threshold, outputs.targets[accepted]
    views = {"": (outputs.probabilities, conformal.quantile(tta=False))}
    if outputs.tta_probabilities is not None:
        views["tta_"] = (outputs.tta_probabilities, conformal.quantile(tta=True))
    for prefix, (probs, qhat) in views.items():
        probs = probs[accepted]
        sets = coverage(probs, targets, threshold, qhat)
        confident = probs.max(axis=1) >= 0.95
        both = set_membership(probs, threshold, qhat).all(axis=1)
        sets["uncertain_when_confident"] = float(both[confident].mean()) if confident.any() else 0.0
        report.update({prefix + k: v for k, v in sets.items()})
    return report


def images_with_masks(images: Path, masks: Path | None, split: str) -> tuple[list[Path], list[Path] | None]:
    """The image files of ``split`` of the folder ``images`` and their masks' paths under ``masks`` (None: no
    mask files, the breast of each mammogram is the region)."""
    raw = load_raw(str(images))
    if split not in raw:
        raise DataError(f"{images} has no {split} split (found {sorted(raw)})")
    paths = [Path(item["path"]) for item in raw[split].cast_column("image", ImageFeature(decode=False))["image"]]
    return paths, None if masks is None else [mask_path(p, images, masks) for p in paths]


def fit_explanations(model: CancerModel, images: Path, masks: Path | None) -> dict[str, Any]:
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


def training_seed(model: CancerModel) -> int:
    """The seed of the recorded training settings (train.py's default, 0, where they give none)."""
    return int(model.config.training.settings.get("seed", 0))


def calibrate_folder(
    folder: Path,
    data: list[str],
    acceptance: float = DEFAULT_ACCEPTANCE,
    alpha: float | None = None,
    refuse: list[str] = (),
    masks: tuple[Path, Path | None] | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit rejection, prediction sets and (with ``masks``: images and their lesion masks; for a mammography
    model, always, against the breast) the default CAM of the model folder ``folder`` trained on ``data``, rewrite the folder, and return the trust report. ``settings``
    replaces config fields first (e.g. ``tta_views``, ``tile_size``)."""
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
        pooled = decode_split(pooled_for_folds(splits), size, preprocessing=prep)
        report = fit_ensemble_trust(model, pooled, training_seed(model), acceptance, alpha, to_refuse)
        test = decode_split(splits["test"], size, preprocessing=prep)
        report["test"] = trust_report(model, split_outputs(model, test, tta=True))
        model.config.training.trust = report
    else:
        decoded = {name: decode_split(ds, size, preprocessing=prep) for name, ds in splits.items()}
        report = fit_trust(model, decoded, acceptance, alpha, to_refuse)
    if masks is None and prep == "mammogram":
        masks = (Path(data[0]), None)  # a mammogram's region is its breast: no mask files needed
    if masks:
        model.config.training.explanations = fit_explanations(model, *masks)
    model.save_pretrained(folder)
    return report
