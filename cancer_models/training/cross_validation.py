"""``train.py --folds K``: K models, one per fold of train + validation, served together as one ensemble.

Each fold's model is a complete folder (``fold1`` ... ``foldK``), early-stopped and tested like any run
(``trainer.train`` runs them). Then every
image of train + validation has one prediction from the model that did not train on it (out-of-fold); those
give the per-fold and out-of-fold metrics, and the ensemble's temperature, threshold and conformal sets, in
place of one small validation split; rejection and prediction sets are fitted out of fold too. The ensemble
(``models/ensemble.py``) is written to the output folder,
re-loaded from it, and tested once on the test split.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from datasets import Image as ImageFeature

from ..calibration.fitting import fit_ensemble_trust, split_outputs, trust_report
from ..calibration.temperature import fit_temperature
from ..data.decoding import DecodedSplit, decode_split
from ..data.image_sets import fold_indices, load_splits, pooled_for_folds
from ..evaluation.localization import ImageScores
from ..evaluation.metrics import binary_metrics, choose_threshold, subtype_metrics, summarize
from ..evaluation.plots import write_plots
from ..inference.predict import Predictor
from ..inference.pretrained import load_pretrained
from ..models import CancerModel, Ensemble
from ..record import TrainingRecord
from ..reporting.model_folder import save_model_folder
from .config import TrainConfig

OUT_OF_FOLD = "out_of_fold"


def fold_dir(cfg: TrainConfig, fold: int) -> Path:
    return Path(cfg.output_dir) / f"fold{fold + 1}"


def _raw_probabilities(model: CancerModel, split: DecodedSplit) -> np.ndarray:
    """softmax of the model's logits without its temperature: what an ensemble averages."""
    saved, model.config.temperature = model.config.temperature, 1.0
    try:
        return split_outputs(model, split).probabilities
    finally:
        model.config.temperature = saved


def build_ensemble(cfg: TrainConfig, log=print) -> Path:
    """The fold models' ensemble, calibrated on their out-of-fold predictions and tested once, in ``output_dir``."""
    out = Path(cfg.output_dir)
    members = [load_pretrained(fold_dir(cfg, k)) for k in range(cfg.folds)]
    size = members[0].config.input_size
    splits, prep, skip = load_splits(cfg.data_spec()), cfg.preprocessing, cfg.skip_bad_images
    pooled_images = pooled_for_folds(splits)
    pooled = decode_split(pooled_images, size, skip, "decoding train + validation", preprocessing=prep)
    test = decode_split(splits["test"], size, skip, "decoding test", preprocessing=prep)
    logits, per_fold = out_of_fold(members, pooled, cfg.folds, cfg.seed)
    ensemble = Ensemble.of(members)
    oof_probs = calibrate_ensemble(ensemble, logits, pooled.targets, cfg.threshold_rule)
    float_probs = split_outputs(ensemble, test).probabilities[:, 1]
    ensemble.save_pretrained(out)  # first without test figures: the test split is scored by the saved ensemble

    shipped = load_pretrained(out)  # with its weights as stored (compressed)
    config = shipped.config
    trust = fit_ensemble_trust(shipped, pooled, cfg.seed)
    test_metrics, trust["test"], test_probs = score_test(shipped, test)
    storage = {
        "weights": "int8 per output channel (convolution and linear weights of 20,000 or more), float16 otherwise",
        "largest_test_probability_change": float(np.abs(test_probs - float_probs).max()),
        "test_auc_in_float32": binary_metrics(test.targets.numpy(), float_probs, config.threshold, n_bootstrap=0)[
            "auc"
        ],
    }
    metrics = {OUT_OF_FOLD: binary_metrics(pooled.targets.numpy(), oof_probs, config.threshold, pooled.groups)}
    metrics["test"] = test_metrics
    aucs = [f["auc"] for f in per_fold if f["auc"] is not None]
    config.training = TrainingRecord(
        **_shared_record(members[0].config.training, cfg.folds),
        splits={"train + validation": len(pooled), "test": len(test)},
        class_counts={"train + validation": pooled.class_counts(), "test": test.class_counts()},
        metrics=metrics,
        cross_validation={
            "folds": cfg.folds,
            "per_fold": per_fold,
            "auc_mean": float(np.mean(aucs)),
            "auc_sd": float(np.std(aucs, ddof=1)),
            "member_test_auc": [m.config.training.metrics["test"]["auc"] for m in members],
            "out_of_fold_explanations": out_of_fold_explanations(members, pooled_images, cfg.folds, cfg.seed),
        },
        trust=trust,
        threshold_rule=cfg.threshold_rule,
        storage=storage,
        subtypes=pooled.subtype_counts(),
    )
    save_model_folder(shipped, out)
    write_plots(out / "plots", test.targets.numpy(), test_probs, config.threshold, config.labels)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log(
        f"{cfg.folds}-fold cross-validation: AUC per fold {', '.join(f'{a:.4f}' for a in aucs)} "
        f"(mean {np.mean(aucs):.4f} +- {np.std(aucs, ddof=1):.4f}); out-of-fold: {summarize(metrics[OUT_OF_FOLD])}"
    )
    log(
        f"ensemble of {cfg.folds}, test: {summarize(metrics['test'])} (compressed weights moved a test probability "
        f"by at most {storage['largest_test_probability_change']:.4f}); wrote {out}"
    )
    return out


def out_of_fold(
    members: list[CancerModel], pooled: DecodedSplit, folds: int, seed: int
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Each image's log-probabilities from the one member that did not train on it, and each fold's AUC."""
    targets = pooled.targets.numpy()
    probs = np.zeros((len(pooled), 2), dtype=np.float32)
    per_fold = []
    for k, (_, held_out) in enumerate(fold_indices(targets.tolist(), pooled.groups, folds, seed)):
        probs[held_out] = _raw_probabilities(members[k], pooled.subset(held_out))
        auc = binary_metrics(targets[held_out], probs[held_out, 1], 0.5, n_bootstrap=0)["auc"]
        per_fold.append({"fold": k + 1, "n": len(held_out), "auc": auc})
    return torch.from_numpy(np.log(probs.clip(1e-12, 1))), per_fold


def out_of_fold_explanations(
    members: list[CancerModel], pooled: Dataset, folds: int, seed: int
) -> dict[str, Any] | None:
    """How often each member's default map peaks inside the lesion on the held-out images it did not train on
    (those with a lesion mask): the explanation measure, out of fold, to choose recipes on beside the AUC.
    None without masks."""
    masks = pooled["mask"]
    if not any(masks):
        return None
    paths = [item["path"] for item in pooled.cast_column("image", ImageFeature(decode=False))["image"]]
    method = members[0].config.cam_method
    scores = ImageScores([method])
    for k, (_, held_out) in enumerate(fold_indices(pooled["target"], pooled["group"], folds, seed)):
        with_mask = [i for i in held_out if masks[i]]
        scores.add(Predictor(members[k]), [Path(paths[i]) for i in with_mask], [Path(masks[i]) for i in with_mask])
    return {"layers": members[0].config.cam_layers, **scores.record(method)}


def calibrate_ensemble(ensemble: Ensemble, logits: torch.Tensor, targets: torch.Tensor, rule: str) -> np.ndarray:
    """Temperature and threshold from out-of-fold log-probabilities (the ensemble's output is a log-probability
    too); rejection and prediction sets come after (``calibrate.fit_ensemble_trust``). Returns the calibrated
    out-of-fold probabilities."""
    config = ensemble.config
    config.temperature = fit_temperature(logits, targets)
    probs = (logits / config.temperature).softmax(dim=1).numpy()
    config.threshold = choose_threshold(targets.numpy(), probs[:, 1], rule)
    return probs[:, 1]


def score_test(model: CancerModel, test: DecodedSplit) -> tuple[dict[str, Any], dict[str, Any], np.ndarray]:
    """The test split, once: metrics (per category too), rejection and prediction sets, probabilities."""
    config = model.config
    outputs = split_outputs(model, test, tta=True)
    probs, targets = outputs.probabilities[:, 1], outputs.targets
    metrics = binary_metrics(targets, probs, config.threshold, test.groups)
    if any(test.subtypes):
        metrics["subtypes"] = subtype_metrics(targets, probs, config.threshold, test.subtypes)
    return metrics, trust_report(model, outputs), probs


def _shared_record(member: TrainingRecord, folds: int) -> dict[str, Any]:
    """What every member's ``config.training`` says alike (data, recipe, provenance), with the recipe extended."""
    keep = ("task", "data", "hub_datasets", "license", "provenance", "base_model")
    record: dict[str, Any] = {k: getattr(member, k) for k in keep}
    # The member's command, less what only that run needed: it builds the ensemble too.
    words = shlex.split(member.command)
    drop = {i for i, w in enumerate(words) if w == "--resume"}
    drop |= {j for i, w in enumerate(words) if w == "--fold" for j in (i, i + 1)}
    record["command"] = shlex.join(w for i, w in enumerate(words) if i not in drop)
    record["settings"] = {**member.settings, "fold": 0, "resume": False}
    record["recipe"] = (
        f"{member.recipe} Ensemble of the models of a group-aware {folds}-fold "
        "cross-validation over train + validation (each early-stopped on its held-out fold), probabilities "
        "averaged; temperature, threshold and prediction sets fitted on the out-of-fold predictions."
    )
    return record
