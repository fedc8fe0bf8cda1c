"""After the last epoch: the best weights, calibrated and given a threshold on validation, evaluated once on
the test split, and written as a Hub-ready folder."""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision

from ..calibration.fitting import fit_trust
from ..calibration.temperature import fit_temperature
from ..config import COLOUR_CONSTANCY
from ..data.augment import tta_views_for
from ..evaluation.metrics import (
    binary_metrics,
    choose_threshold,
    collection_metrics,
    subtype_metrics,
    subtype_pair_metrics,
    summarize,
)
from ..evaluation.plots import write_plots
from ..models import BACKBONES
from ..record import Hardware, Provenance, TrainingRecord
from ..reporting.model_folder import save_model_folder
from ..settings import TileSpec
from ..sources import display_name, is_hub_id
from ..version import __version__
from .checkpoint import TrainerState, load_best_weights
from .loop import Run, predict_split


def finish(run: Run, state: TrainerState) -> Path:
    """Best weights -> temperature and threshold from validation -> one look at the test split -> folder."""
    out = Path(run.cfg.output_dir)
    run.accelerator.wait_for_everyone()
    load_best_weights(run.unwrapped, out)
    # Every held-out split: validation, test, and with --leave-out the collections never trained on.
    held_out = {name: predict_split(run, name) for name in run.decoded if name != "train"}
    if not run.accelerator.is_main_process:
        return out
    config = run.unwrapped.config
    val_logits, val_targets = held_out["validation"]
    config.temperature = fit_temperature(val_logits, val_targets)
    val_probs = _malignant_probability(val_logits, config.temperature)
    config.threshold = choose_threshold(val_targets.numpy(), val_probs, run.cfg.threshold_rule)
    metrics = {name: _split_metrics(run, name, logits, targets) for name, (logits, targets) in held_out.items()}
    test_targets, test_probs = (
        held_out["test"][1].numpy(),
        _malignant_probability(held_out["test"][0], config.temperature),
    )
    collapsed = len(set((test_probs >= config.threshold).tolist())) == 1
    config.model_args = {k: v for k, v in config.model_args.items() if k != "pretrained_backbone"}
    config.tta_views = tta_views_for(run.augment)
    config.tile = TileSpec(run.cfg.tile_size, run.cfg.tile_mpp) if run.cfg.tile_size else None
    config.training = training_record(run, state, metrics, collapsed)
    trust = fit_trust(run.unwrapped, run.decoded)
    run.log(
        f"out-of-distribution check: {trust['test']['rejected']:.1%} of test images rejected; prediction sets "
        f"at {config.conformal.level:.0%}: test coverage {trust['test'].get('coverage', float('nan')):.3f}"
    )
    _write_folder(run, out, state, metrics, test_targets, test_probs)
    run.log(f"test: {summarize(metrics['test'])}; wrote {out}")
    if collapsed:
        run.log("warning: class collapse: the final model gives every test image the same label")
    return out


def _split_metrics(run: Run, name: str, logits: torch.Tensor, targets: torch.Tensor) -> dict:
    """A held-out split's metrics at the chosen threshold, per category on the test split, and the collections
    a left-out split holds."""
    config, split = run.unwrapped.config, run.decoded[name]
    probs = _malignant_probability(logits, config.temperature)
    metrics = binary_metrics(targets.numpy(), probs, config.threshold, split.groups)
    if name == "test" and any(split.subtypes):
        metrics["subtypes"] = subtype_metrics(targets.numpy(), probs, config.threshold, split.subtypes)
    per_collection = collection_metrics(targets.numpy(), probs, config.threshold, split.groups, split.collections)
    if name in ("test", "left_out") and per_collection:
        metrics["per_collection"] = per_collection
    if name == "left_out":
        metrics["collections"] = sorted(set(split.collections))
    pairs = subtype_pair_metrics(targets.numpy(), probs, config.threshold, split.groups, split.subtypes)
    if pairs:
        metrics["subtype_pairs"] = pairs
    return metrics


def _malignant_probability(logits: torch.Tensor, temperature: float) -> np.ndarray:
    return (logits / temperature).softmax(dim=1)[:, 1].numpy()


def training_record(run: Run, state: TrainerState, metrics: dict, collapsed: bool) -> TrainingRecord:
    """``config.training``: the data, splits, metrics and recipe, and the code and libraries that trained it."""
    cfg, decoded = run.cfg, run.decoded
    record = TrainingRecord(
        task=cfg.task or ", ".join(display_name(s) for s in cfg.data),
        data=list(cfg.data),
        hub_datasets=[s for s in cfg.data if is_hub_id(s)],
        license=cfg.license,
        splits={name: len(d) for name, d in decoded.items()},
        class_counts={name: d.class_counts() for name, d in decoded.items()},
        metrics=metrics,
        best_epoch=state.best_epoch,
        epochs_run=state.epoch,
        recipe=recipe(run),
        threshold_rule=cfg.threshold_rule,
        class_collapse_on_test=collapsed,
        command=shlex.join(sys.argv),
        settings=dataclasses.asdict(cfg),
        provenance=run.provenance,
    )
    skipped = {name: d.skipped for name, d in decoded.items() if d.skipped}
    if run.streamed:
        record.splits["train"] = len(run.streamed)
        record.class_counts["train"] = run.streamed.class_counts()
        record.streamed = f"training split streamed; rejection check fitted on its first {len(decoded['train'])} images"
        skipped = {k: v for k, v in skipped.items() if k != "train"} | (
            {"train": run.streamed.skipped} if run.streamed.skipped else {}
        )
    record.skipped_images = skipped or None
    if cfg.pretrained and BACKBONES.get(cfg.model) and BACKBONES[cfg.model].hub_id:
        record.base_model = BACKBONES[cfg.model].hub_id
    return record


def provenance(device: torch.device, processes: int) -> Provenance:
    """The package version, the git commit of this package's checkout (with '-dirty' for uncommitted changes),
    the hardware trained on and library versions."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return result.stdout.strip()

    commit = git("rev-parse", "HEAD")
    if commit and git("status", "--porcelain", "--untracked-files=no"):
        commit += "-dirty"
    if device.type == "cuda":
        hardware = Hardware("cuda", processes, torch.cuda.get_device_name(device))
    else:
        hardware = Hardware(device.type, processes, threads=torch.get_num_threads())
    # The version this code declares, not an installed distribution's: a checkout run in place has none.
    return Provenance(
        __version__, commit, hardware, torch.__version__.split("+")[0], torchvision.__version__.split("+")[0]
    )


def recipe(run: Run) -> str:
    cfg, accelerator = run.cfg, run.accelerator
    colour = COLOUR_CONSTANCY[cfg.colour_constancy]
    freeze = f", backbone frozen for {cfg.freeze_epochs} epoch(s)" if cfg.freeze_epochs else ""
    masks = run.decoded["train"].masks
    guided = ""
    if cfg.mask_loss and masks is not None:
        layers = run.unwrapped.config.cam_layers or run.unwrapped.default_cam_layers()
        lesions = run.decoded["train"].lesion_count()
        guided = (
            f" Mask-guided: plus {cfg.mask_loss} x the share of Grad-CAM heat ({', '.join(layers)}) "
            f"outside the lesion, on the {lesions} of {len(masks)} training images with a lesion mask."
        )
    return (
        f"{cfg.model} from {'ImageNet weights' if cfg.pretrained else 'scratch'}{freeze}, {cfg.input_size}px"
        f"{', ' + colour if colour else ''}, "
        f"up to {cfg.epochs} epochs (early stopping on validation AUC, patience {cfg.patience}), batch {cfg.batch_size} "
        f"x {accelerator.num_processes} process(es), AdamW lr {cfg.lr} wd {cfg.weight_decay}, {cfg.warmup_epochs} warm-up "
        f"epoch(s) then {cfg.scheduler}, {cfg.loss} loss{' with class weights' if cfg.class_weights else ''}, "
        f"{'both classes drawn equally often within each collection, ' if cfg.balance_collections else ''}augmentation '{cfg.augment}', mixed precision {accelerator.mixed_precision}; temperature scaling and a "
        f"'{cfg.threshold_rule}' threshold fitted on validation.{guided}"
    )


def _write_folder(
    run: Run, out: Path, state: TrainerState, metrics: dict, test_targets: np.ndarray, test_probs: np.ndarray
) -> None:
    model = run.unwrapped
    model.to("cpu", memory_format=torch.contiguous_format)
    save_model_folder(model, out)
    config = model.config
    write_plots(out / "plots", test_targets, test_probs, config.threshold, config.labels, state.history)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
