"""Evaluate a model on one split of an image set (``cancer-models evaluate``): metrics with group-bootstrap
intervals, per category, and optionally under acquisition shifts and against lesion masks.

The data folder is an imagefolder with split subfolders (train/validation/test) or flat benign/ and
malignant/ folders, or a Hub dataset id.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, concatenate_datasets
from datasets import Image as ImageFeature

from ..data.decoding import decode_split
from ..data.image_sets import at_model_scale, load_raw, load_source, partition_collections, standardise
from ..data.mammography import view_from_name
from ..data.spec import DataSpec, recorded_data_spec
from ..errors import ConfigError, DataError
from ..inference.predict import Predictor
from ..inference.pretrained import load_pretrained
from ..models import CancerModel
from ..reporting.model_card import RESEARCH_WARNING
from ..reporting.model_folder import save_model_folder
from ..reporting.tables import metrics_table, subtype_pair_table
from ..sources import is_hub_id
from .metrics import binary_metrics, collection_metrics, subtype_metrics, subtype_pair_metrics
from .plots import write_plots


def evaluate(
    model: CancerModel,
    data: str | Path,
    split: str | None = None,
    tta: bool = False,
    label_map: dict[str, str] | None = None,
    batch_size: int = 64,
) -> Evaluation:
    """Metrics of ``model`` on one split of ``data`` (a folder or Hub dataset id), and the per-image results.

    Args:
        model: the model to score.
        data: an imagefolder directory or a Hub dataset id.
        split: ``test`` (default), ``validation``, ``train``, ``left_out`` or ``all``. Where ``data`` is one of the
            model's training sets and has no such split folder, the training run's split is recreated from the
            model's record (same seed, fractions and groups), so held-out images are scored and training images
            never are; a run trained with ``--leave-out`` has those collections out of every split, and
            ``left_out`` scores them; ``all`` scores every image and the result says so when the model trained on
            some of them.
        tta: average the model's test-time views.
        label_map: raw label -> benign / malignant, for sets with other label names.
        batch_size: images per forward pass.

    Returns:
        The metrics, which images were scored (``split_note``, one sentence) and what the model said of each.
    """
    chosen = choose_split(model, data, split or "test", label_map or {})
    ds = chosen.images
    decoded = decode_split(ds, model.config.input_size, preprocessing=model.config.preprocessing)
    paths = [item["path"] for item in ds.cast_column("image", ImageFeature(decode=False))["image"]]
    predictor = Predictor(model, tta=tta, batch_size=batch_size)
    probabilities, unusualness = predictor.analyse(decoded.images)
    probs = probabilities[:, 1].numpy()
    # Groups only matter for the bootstrap; without a group column every image is its own group anyway.
    metrics = binary_metrics(decoded.targets.numpy(), probs, model.config.threshold, decoded.groups)
    if unusualness is not None:
        metrics.update(answered_metrics(decoded.targets.numpy(), probs, unusualness.numpy(), model, decoded.groups))
    per_collection = collection_metrics(
        decoded.targets.numpy(), probs, model.config.threshold, decoded.groups, decoded.collections
    )
    if per_collection:
        metrics["per_collection"] = per_collection
    if any(decoded.subtypes):
        metrics["subtypes"] = subtype_metrics(decoded.targets.numpy(), probs, model.config.threshold, decoded.subtypes)
        pairs = subtype_pair_metrics(
            decoded.targets.numpy(), probs, model.config.threshold, decoded.groups, decoded.subtypes
        )
        if pairs:
            metrics["subtype_pairs"] = pairs
    if model.config.preprocessing == "mammogram":
        metrics.update(view_metrics(decoded.targets.numpy(), probs, model.config.threshold, decoded.groups, paths))
    images = ScoredImages(
        targets=decoded.targets.tolist(),
        p_malignant=probs.tolist(),
        unusualness=None if unusualness is None else unusualness.tolist(),
        groups=list(decoded.groups),
        paths=paths,
        collections=list(decoded.collections),
    )
    return Evaluation(metrics, chosen.name, chosen.note, chosen.trained_on, tta, images)


@dataclass
class ScoredImages:
    """What a model said about each image an evaluation scored, in one order."""

    targets: list[int]  # 0 benign, 1 malignant
    p_malignant: list[float]  # calibrated
    unusualness: list[float] | None  # the rejection check's multiple of its limit (above 1: refused); None without one
    groups: list[str]
    paths: list[str]
    collections: list[str] = field(default_factory=list)  # each image's collection (clinic, lab), "" for none

    @classmethod
    def pooled(cls, parts: list[ScoredImages]) -> ScoredImages:
        """Several image sets' results as one; group names are kept apart per set."""
        unusual = None if any(p.unusualness is None for p in parts) else [u for p in parts for u in p.unusualness]
        return cls(
            targets=[t for p in parts for t in p.targets],
            p_malignant=[v for p in parts for v in p.p_malignant],
            unusualness=unusual,
            groups=[f"{i}/{g}" for i, p in enumerate(parts) for g in p.groups],
            paths=[path for p in parts for path in p.paths],
            collections=[c for p in parts for c in (p.collections or [""] * len(p.targets))],
        )

    def to_dict(self) -> dict[str, Any]:
        """The results as JSON-ready lists."""
        return asdict(self)


@dataclass
class Evaluation:
    """What ``evaluate`` measured on one split of one image set."""

    # binary_metrics' figures; with a rejection check the share refused and the answered images' metrics
    # ("refused", "answered"); per collection, subtype and mammography view where the data has them.
    metrics: dict[str, Any]
    split: str  # test, validation, train or all
    split_note: str  # one sentence on which images these are; a warning first where the model trained on them
    includes_training_images: bool
    tta: bool
    images: ScoredImages

    def to_dict(self) -> dict[str, Any]:
        """The figures and where they come from, as ``cancer-models evaluate`` prints them (per-image results
        left out: ``images.to_dict()``)."""
        return {
            **self.metrics,
            "split": self.split,
            "split_note": self.split_note,
            "includes_training_images": self.includes_training_images,
            "tta": self.tta,
        }


def answered_metrics(
    targets: np.ndarray, probs: np.ndarray, unusualness: np.ndarray, model: CancerModel, groups: list[str]
) -> dict[str, Any]:
    """The share of images the rejection check refuses and, on those it answers, the metrics: the figures above
    score every image, as if the model answered them all, which it does not."""
    accepted = unusualness <= 1
    out: dict[str, Any] = {"refused": float(1 - accepted.mean())}
    if accepted.any() and not accepted.all():
        kept = np.flatnonzero(accepted)
        out["answered"] = binary_metrics(targets[kept], probs[kept], model.config.threshold, [groups[i] for i in kept])
    return out


def view_metrics(
    targets: np.ndarray, probs: np.ndarray, threshold: float, groups: list[str], paths: list[str]
) -> dict[str, dict]:
    """``{"views": {"CC": metrics, "MLO": metrics}}`` for the mammograms whose file names say their view, or
    nothing where none does (a screening reader judges each view apart: MLO views show more of the breast)."""
    views = [view_from_name(p) or "" for p in paths]
    per_view = collection_metrics(targets, probs, threshold, groups, views, at_least=1)
    return {"views": per_view} if per_view else {}


@dataclass
class ChosenSplit:
    """The images an evaluation scores, and one sentence on where they come from."""

    images: Dataset
    name: str  # test, validation, train or all
    note: str
    trained_on: bool  # True when some of these images trained the model


def choose_split(model: CancerModel, data: str | Path, split: str, label_map: dict[str, str]) -> ChosenSplit:
    """The ``split`` of ``data`` to score ``model`` on (see ``evaluate``), never its training images unless
    ``split`` is ``train`` or ``all``."""
    source = str(data)
    raw = load_raw(source)
    record = model.config.training
    known = is_training_source(source, record.data)
    spec = recorded_data_spec(record, [source], label_map) if known else DataSpec([source], label_map=label_map)
    if split in ("all", "left_out"):
        every = concatenate_datasets([_standard(ds, spec, f"{source}/{n}", source) for n, ds in raw.items()])
        if split == "left_out":
            return _left_out(every, spec, known)
        note = f"all {len(every)} images of every split"
        if known:
            note = f"WARNING: includes images the model was trained on: {note} of one of its training sets"
        return ChosenSplit(every, "all", note, known)
    if split not in ("train", "validation", "test"):
        raise DataError(f"unknown split {split!r}: choose test, validation, train, left_out or all")
    if split in raw:
        ds = _standard(raw[split], spec, f"{source}/{split}", source)
        trained = known and split == "train"
        note = f"the {split} split ({len(ds)} images)"
        if known and spec.leave_out:  # the collections training left out are not part of its splits
            ds = partition_collections(ds, spec.leave_out)[0]
            note = f"the {split} split without the collections training left out ({len(ds)} images)"
            if len(ds) == 0:
                raise DataError(
                    f"{source}'s {split} split holds only collections training left out "
                    f"({', '.join(spec.leave_out)}): score them with --split left_out"
                )
        if trained:
            note = f"WARNING: these are the images the model was trained on: {note} of one of its training sets"
        return ChosenSplit(ds, split, note, trained)
    if not known:
        if len(raw) > 1:
            raise DataError(f"{source} has no split {split!r} (found {sorted(raw)})")
        # A folder the model never saw, without split folders: every image is held out.
        (only,) = raw.values()
        ds = _standard(only, spec, source, source)
        return ChosenSplit(ds, "all", f"all {len(ds)} images (not one of the model's training sets)", False)
    if "train" not in raw:
        raise DataError(f"{source} has no split {split!r} (found {sorted(raw)})")
    # One of the model's training sets without this split folder: training split it off; split it off again.
    ds = load_source(source, spec)[split]
    if spec.leave_out:
        ds = partition_collections(ds, spec.leave_out)[0]
    note = (
        f"the {split} split ({len(ds)} images) of train/ recreated from the model's training record "
        f"(seed {spec.seed}, groups kept whole): none of these images trained the model"
    )
    return ChosenSplit(ds, split, note, False)


def _left_out(every: Dataset, spec: DataSpec, known: bool) -> ChosenSplit:
    """Every image of the collections the model's training run left out (``--leave-out``)."""
    if not (known and spec.leave_out):
        raise DataError("--split left_out needs a model trained on this data with --leave-out")
    held = partition_collections(every, spec.leave_out)[1]
    if len(held) == 0:
        raise DataError(f"this data holds no image of the collections left out ({', '.join(spec.leave_out)})")
    names = ", ".join(sorted(set(held["collection"])))
    return ChosenSplit(
        held, "left_out", f"the {len(held)} images of the collection(s) training left out: {names}", False
    )


def _standard(ds: Dataset, spec: DataSpec, where: str, source: str) -> Dataset:
    """Standardised rows, cut into tiles of the model's scale where its training cut that source (``spec``)."""
    return at_model_scale(standardise(ds, spec, where, source), spec, source, where)


def is_training_source(source: str, training_data: list[str]) -> bool:
    """Whether ``source`` (a folder or Hub id) is one of the image sets a model was trained on, as recorded."""
    if is_hub_id(source):
        return source in training_data
    here = Path(source).expanduser().resolve()
    return any(not is_hub_id(d) and Path(d).expanduser().resolve() == here for d in training_data)


def write_report(
    out: Path, model: CancerModel, metrics: dict[str, Any], images: ScoredImages, model_name: str, data_name: str
) -> None:
    """Write ``metrics.json``, ``report.md`` and the plots of an evaluation into ``out``.

    Args:
        out: the report's folder (created if missing).
        model: the model scored.
        metrics: ``Evaluation.to_dict()``, with any further analyses (explanations, shifts) added.
        images: the per-image results the plots are drawn from.
        model_name: the model as the report names it.
        data_name: the image set as the report names it.
    """
    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(out, images.targets, images.p_malignant, metrics["threshold"], model.config.labels)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    tn, fp, fn, tp = (v for row in metrics["confusion_matrix"] for v in row)
    # A score that includes training images says so before anything else.
    warning = [metrics["split_note"]] if metrics.get("includes_training_images") else []
    lines = [
        *warning,
        f"# Evaluation of {model_name}",
        f"> {RESEARCH_WARNING}",
        (
            f"Data: `{data_name}`, {metrics['split_note']}: {metrics['n']} images ({metrics['n_benign']} "
            f"{model.config.labels[0]}, {metrics['n_malignant']} {model.config.labels[1]}); test-time augmentation: "
            f"{'on' if metrics['tta'] else 'off'}; threshold {metrics['threshold']:.3f}. Intervals: 95% bootstrap over "
            f"{metrics['bootstrap']['resamples']} resamples of {metrics['bootstrap']['unit']}s."
        ),
        metrics_table(metrics),
        f"Confusion matrix: TN {tn}, FP {fp}, FN {fn}, TP {tp}.",
        *_answered_section(metrics),
        *[f"## {view} views ({m['n']} images)\n\n{metrics_table(m)}" for view, m in metrics.get("views", {}).items()],
        *(
            [f"## Malignant against benign categories\n\n{subtype_pair_table(metrics['subtype_pairs'])}"]
            if metrics.get("subtype_pairs")
            else []
        ),
        *[f"![{p.stem}]({p.name})" for p in plots],
    ]
    (out / "report.md").write_text("\n\n".join(lines) + "\n")


def _answered_section(metrics: dict[str, Any]) -> list[str]:
    if "refused" not in metrics:
        return []
    lines = [f"The rejection check refused {metrics['refused']:.1%} of these images; the figures above score them all."]
    if "answered" in metrics:
        answered = metrics["answered"]
        lines.append(f"## The {answered['n']} images it answered\n\n{metrics_table(answered)}")
    return lines


def record_evaluation(folder: str | Path, key: str, value: Any) -> None:
    """Store an analysis of the model folder ``folder`` under ``key`` in its ``evaluations.json`` (the card shows
    it); the config and weights are left as they are. ``folder`` must be a local model folder."""
    if not Path(folder, "config.json").is_file():
        raise ConfigError(f"recording needs a local model folder, got {folder}")
    model = load_pretrained(folder)
    model.config.training.evaluations[key] = value
    save_model_folder(model, folder)
