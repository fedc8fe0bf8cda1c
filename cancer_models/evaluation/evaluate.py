"""Evaluate a model on one split of an image set (``cancer-models evaluate``): metrics with group-bootstrap
intervals, per category, and optionally under acquisition shifts and against lesion masks.

The data folder is an imagefolder with split subfolders (train/validation/test) or flat benign/ and
malignant/ folders, or a Hub dataset id.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datasets import Image as ImageFeature

from ..data.decoding import decode_split
from ..data.image_sets import DataSpec, load_raw, standardise
from ..errors import ConfigError, DataError
from ..inference.predict import Predictor
from ..models import CancerModel, load_pretrained
from ..reporting.model_card import RESEARCH_WARNING
from ..reporting.tables import metrics_table
from .metrics import binary_metrics, subtype_metrics
from .plots import write_plots


def evaluate(
    model: CancerModel,
    data: str | Path,
    split: str | None = None,
    tta: bool = False,
    label_map: dict[str, str] | None = None,
    batch_size: int = 64,
) -> tuple[dict, dict]:
    """Metrics of ``model`` on one split of ``data`` (a folder or Hub dataset id), and the raw per-image results."""
    splits = load_raw(str(data))
    if split is None:
        split = "test" if "test" in splits else next(iter(splits)) if len(splits) == 1 else None
        if split is None:
            raise DataError(f"{data} has splits {sorted(splits)} and none is 'test': choose one with --split")
    if split not in splits:
        raise DataError(f"{data} has no split {split!r} (found {sorted(splits)})")
    ds = standardise(splits[split], DataSpec([str(data)], label_map=label_map or {}), f"{data}/{split}", str(data))
    decoded = decode_split(ds, model.config.input_size)
    paths = [item["path"] for item in ds.cast_column("image", ImageFeature(decode=False))["image"]]
    predictor = Predictor(model, tta=tta, batch_size=batch_size)
    probs = predictor.probabilities(decoded.images)[:, 1].numpy()
    # Groups only matter for the bootstrap; without a group column every image is its own group anyway.
    metrics = binary_metrics(decoded.targets.numpy(), probs, model.config.threshold, decoded.groups)
    if any(decoded.subtypes):
        metrics["subtypes"] = subtype_metrics(decoded.targets.numpy(), probs, model.config.threshold, decoded.subtypes)
    # A flat benign/ malignant/ folder loads as one "train" split; call it what it is.
    metrics.update(split=split if len(splits) > 1 else "all", tta=tta)
    raw = {"targets": decoded.targets.tolist(), "p_malignant": probs.tolist(), "groups": decoded.groups, "paths": paths}
    return metrics, raw


def write_report(out: Path, model: CancerModel, metrics: dict, raw: dict, model_name: str, data_name: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(out, raw["targets"], raw["p_malignant"], metrics["threshold"], model.config.labels)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    tn, fp, fn, tp = (v for row in metrics["confusion_matrix"] for v in row)
    lines = [
        f"# Evaluation of {model_name}",
        f"> {RESEARCH_WARNING}",
        (
            f"Data: `{data_name}`, split `{metrics['split']}`: {metrics['n']} images ({metrics['n_benign']} "
            f"{model.config.labels[0]}, {metrics['n_malignant']} {model.config.labels[1]}); test-time augmentation: "
            f"{'on' if metrics['tta'] else 'off'}; threshold {metrics['threshold']:.3f}. Intervals: 95% bootstrap over "
            f"{metrics['bootstrap']['resamples']} resamples of {metrics['bootstrap']['unit']}s."
        ),
        metrics_table(metrics),
        f"Confusion matrix: TN {tn}, FP {fp}, FN {fn}, TP {tp}.",
        *[f"![{p.stem}]({p.name})" for p in plots],
    ]
    (out / "report.md").write_text("\n\n".join(lines) + "\n")


def record_evaluation(folder: str | Path, key: str, value: Any) -> None:
    """Store an analysis of the model folder ``folder`` under ``key`` in its ``evaluations.json`` (the card shows
    it); the config and weights are left as they are. ``folder`` must be a local model folder."""
    if not Path(folder, "config.json").is_file():
        raise ConfigError(f"recording needs a local model folder, got {folder}")
    model = load_pretrained(folder)
    model.config.training.evaluations[key] = value
    model.save_pretrained(folder)
