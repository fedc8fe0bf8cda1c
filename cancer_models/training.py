"""The training function behind ``accelerate launch train.py``.

Config in one dataclass, one ``train`` function: Accelerate owns devices, mixed precision and
processes; the loop itself has nothing device-specific. Images are decoded once to uint8 tensors at the
input size and augmented per batch on the device, which keeps small CPUs busy with the model, not JPEG.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from safetensors.torch import load_model, save_model
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from .augment import AUGMENTATIONS, build_augmentation
from .config import ConfigError
from .data import DataError, DataSpec, DecodedSplit, decode_split, load_splits, parse_label_map
from .hub import save_pretrained
from .images import normalize
from .metrics import binary_metrics, choose_threshold, fit_temperature, summarize
from .model_card import render_model_card
from .models import create_model, list_models

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "trainer_state.json"
BEST_WEIGHTS = "best.safetensors"


def _opt(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    data: list[str] = _opt(
        None, "image set(s): imagefolder directories, Hub dataset ids or their downloaded parquet folders (combined)"
    )
    output_dir: str = _opt("runs/model", "folder for the trained model, its card, plots and checkpoints")
    model: str = _opt("cancer_cnn", "architecture", choices=list_models())
    input_size: int = _opt(128, "images are resized to input_size x input_size")
    pretrained: bool = _opt(False, "start transfer models from ImageNet weights (downloads them once)")
    freeze_epochs: int = _opt(0, "transfer models: epochs that train only the head before full fine-tuning")
    image_column: str = _opt("image", "dataset column holding the images")
    label_column: str = _opt("label", "dataset column holding the labels")
    group_column: str = _opt("group", "dataset column grouping near-copies (kept in one split); optional")
    label_map: str = _opt("", "map raw labels onto benign/malignant, e.g. 'lung_n=benign,lung_aca=malignant'")
    validation_fraction: float = _opt(0.15, "share split off for validation where a source has no validation split")
    test_fraction: float = _opt(0.15, "share split off for testing where a source has no test split")
    augment: str = _opt("default", "augmentation preset", choices=list(AUGMENTATIONS))
    epochs: int = _opt(30, "maximum epochs")
    batch_size: int = _opt(64, "batch size per process")
    lr: float = _opt(1e-3, "peak learning rate (AdamW)")
    weight_decay: float = _opt(1e-4, "AdamW weight decay")
    warmup_epochs: float = _opt(1.0, "linear warm-up before the cosine decay")
    scheduler: str = _opt("cosine", "learning-rate schedule", choices=["cosine", "plateau"])
    patience: int = _opt(8, "early stopping: epochs without a better validation AUC (ties: lower validation loss)")
    clip_grad: float = _opt(1.0, "gradient norm clipping (0 disables)")
    loss: str = _opt("ce", "loss", choices=["ce", "focal"])
    focal_gamma: float = _opt(2.0, "focal loss gamma")
    class_weights: bool = _opt(True, "weight the loss by inverse class frequency of the training split")
    label_smoothing: float = _opt(0.0, "label smoothing for the cross-entropy loss")
    threshold: str = _opt("youden", "decision threshold chosen on validation: youden, sensitivity=0.95, or a number")
    mixed_precision: str = _opt(
        None, "default: what `accelerate launch` was configured with", choices=["no", "bf16", "fp16"]
    )
    compile: bool = _opt(False, "torch.compile the model (for GPUs: no faster on the CPU, see benchmarks/README.md)")
    seed: int = _opt(0, "random seed")
    task: str = _opt("", "what the model is for, shown in its card, e.g. 'histopathology (LC25000)'")
    resume: bool = _opt(False, "continue from output_dir/checkpoint after an interruption")


class FocalLoss(nn.Module):
    """Softmax focal loss (Lin et al., 2017): down-weights examples the model already gets right."""

    def __init__(self, gamma: float, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = logits.float().log_softmax(dim=1).gather(1, target[:, None]).squeeze(1)
        loss = -((1 - log_p.exp()) ** self.gamma) * log_p
        if self.weight is not None:
            w = self.weight[target]
            return (loss * w).sum() / w.sum()
        return loss.mean()


def _loss_fn(cfg: TrainConfig, counts: list[int]) -> nn.Module:
    weight = None
    if cfg.class_weights:
        total = sum(counts)
        weight = torch.tensor([total / (2 * max(c, 1)) for c in counts], dtype=torch.float32)
    if cfg.loss == "focal":
        return FocalLoss(cfg.focal_gamma, weight)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)


def _lr_lambdas(cfg: TrainConfig, steps_per_epoch: int, model: nn.Module, state: dict) -> list:
    warmup = max(1, round(cfg.warmup_epochs * steps_per_epoch))
    total = max(cfg.epochs * steps_per_epoch, warmup + 1)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.scheduler == "plateau":
            return state["lr_scale"]
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / (total - warmup))))

    frozen_steps = cfg.freeze_epochs * steps_per_epoch

    def backbone(step: int) -> float:
        # A frozen backbone is one whose learning rate is zero: unlike requires_grad=False this keeps
        # the set of trained parameters fixed, which DDP and exact resumption both need.
        return 0.0 if step < frozen_steps else schedule(step)

    return [backbone, schedule] if _has_backbone(model) else [schedule]


def _has_backbone(model: nn.Module) -> bool:
    return hasattr(model, "features") and hasattr(model, "head")


def build_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW, with the backbone in its own group (its warm-up differs) where the model has one."""
    if _has_backbone(model):
        groups = [{"params": model.features.parameters()}, {"params": model.head.parameters()}]
    else:
        groups = [{"params": model.parameters()}]
    # fused: one kernel for all parameters instead of several per tensor (CPU and CUDA alike)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, fused=True)


def _check(cfg: TrainConfig) -> None:
    """Everything that can be checked before data is decoded or a model built."""
    if not cfg.data:
        raise ConfigError("no data given: pass one or more image folders or Hub dataset ids")
    if cfg.model not in list_models():
        raise ConfigError(f"unknown model {cfg.model!r}; choose from {', '.join(list_models())}")
    if cfg.freeze_epochs and not cfg.model.startswith(("resnet", "mobilenet", "efficientnet", "vgg")):
        raise ConfigError("--freeze-epochs applies to transfer models (a backbone to freeze), not to cancer_cnn")
    if cfg.augment not in AUGMENTATIONS:
        raise ConfigError(f"unknown augmentation {cfg.augment!r}; choose from {', '.join(AUGMENTATIONS)}")
    try:
        choose_threshold([0, 1], [0.2, 0.8], cfg.threshold)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if cfg.resume and not (Path(cfg.output_dir) / CHECKPOINT_DIR / STATE_FILE).is_file():
        raise ConfigError(f"--resume: no checkpoint in {Path(cfg.output_dir) / CHECKPOINT_DIR}")


def training_batch(
    images: torch.Tensor, augment: nn.Module, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """What the model trains on: a uint8 batch augmented in [0, 1], then normalised like at inference."""
    x = augment(images.float().div(255)).mul_(255)
    return normalize(x, mean, std).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def _predict(model: nn.Module, loader: DataLoader, accelerator: Accelerator, mean, std):
    """Logits and targets over a whole split, gathered from every process without duplicates."""
    model.eval()
    all_logits, all_targets = [], []
    for images, targets in loader:
        x = normalize(images, mean, std).contiguous(memory_format=torch.channels_last)
        with accelerator.autocast():
            logits = model(x).float()
        logits, targets = accelerator.gather_for_metrics((logits, targets))
        all_logits.append(logits.cpu())
        all_targets.append(targets.cpu())
    return torch.cat(all_logits), torch.cat(all_targets)


def train(cfg: TrainConfig) -> Path:
    """Train, calibrate, evaluate on the test split once, and write a Hub-ready folder; returns it."""
    _check(cfg)
    out = Path(cfg.output_dir)
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        log_with="tensorboard",
        project_dir=str(out),
        # non_blocking: with pinned memory, the next batch's copy to the GPU overlaps this step's work
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, non_blocking=True),
    )
    set_seed(cfg.seed)
    log = accelerator.print
    free = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)  # not on macOS
    cores = len(free) // accelerator.num_processes
    if accelerator.device.type == "cpu" and torch.get_num_threads() < cores:
        log(
            f"warning: PyTorch uses {torch.get_num_threads()} thread(s) where {cores} cores are free per process; "
            "`accelerate launch` sets OMP_NUM_THREADS=1 unless given --num_cpu_threads_per_process N"
        )

    spec = DataSpec(
        sources=cfg.data,
        image_column=cfg.image_column,
        label_column=cfg.label_column,
        group_column=cfg.group_column,
        label_map=parse_label_map(cfg.label_map),
        validation_fraction=cfg.validation_fraction,
        test_fraction=cfg.test_fraction,
        seed=cfg.seed,
    )
    model_args = {"pretrained_backbone": True} if cfg.pretrained else {}
    # One process downloads ImageNet weights and builds the datasets cache; the others then read both.
    with accelerator.main_process_first():
        model = create_model(cfg.model, input_size=cfg.input_size, **model_args)  # before the data: fails fast
        splits = load_splits(spec)
    decoded: dict[str, DecodedSplit] = {name: decode_split(ds, cfg.input_size) for name, ds in splits.items()}
    for name, d in decoded.items():
        log(f"{name}: {len(d)} images (benign {d.class_counts()[0]}, malignant {d.class_counts()[1]})")
    _check_no_shared_groups(decoded)

    model.to(memory_format=torch.channels_last)
    mean, std, labels = model.config.mean, model.config.std, model.config.labels

    def loader(split: DecodedSplit, shuffle: bool) -> DataLoader:
        return DataLoader(
            TensorDataset(split.images, split.targets),
            batch_size=cfg.batch_size,
            shuffle=shuffle,
            pin_memory=accelerator.device.type == "cuda",
        )

    train_loader = loader(decoded["train"], shuffle=True)
    val_loader, test_loader = loader(decoded["validation"], False), loader(decoded["test"], False)
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay)
    state = {
        "epoch": 0,
        "best_auc": -1.0,
        "best_val_loss": math.inf,
        "best_epoch": 0,
        "stale_epochs": 0,
        "lr_scale": 1.0,
        "history": [],
    }
    # Accelerate steps a prepared scheduler once per process per step, so lengths are in unsharded steps.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambdas(cfg, len(train_loader), model, state))
    criterion = _loss_fn(cfg, decoded["train"].class_counts())
    augment = build_augmentation(cfg.augment)
    model, optimizer, train_loader, val_loader, test_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, val_loader, test_loader, scheduler
    )
    criterion, augment = criterion.to(accelerator.device), augment.to(accelerator.device)
    if cfg.compile:
        model = torch.compile(model)
    torch.backends.cudnn.benchmark = True  # one input size throughout, so cuDNN's timing run pays off

    checkpoint = out / CHECKPOINT_DIR
    if cfg.resume:
        saved = json.loads((checkpoint / STATE_FILE).read_text())
        _check_resume_compatible(saved["config"], cfg)
        accelerator.load_state(str(checkpoint))
        state.update(saved["state"])  # in place: the schedule reads lr_scale from it
        log(f"resumed after epoch {state['epoch']} (best validation AUC {state['best_auc']:.4f})")
    accelerator.init_trackers("logs", config={k: str(v) for k, v in dataclasses.asdict(cfg).items()})

    started = time.time()
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        if state["stale_epochs"] >= cfg.patience:
            break
        model.train()
        train_loader.set_epoch(epoch)
        summed_loss, seen = torch.zeros((), device=accelerator.device), 0
        bar = tqdm(
            train_loader, desc=f"epoch {epoch}/{cfg.epochs}", disable=not accelerator.is_local_main_process, leave=False
        )
        for step, (images, targets) in enumerate(bar, 1):
            with torch.no_grad():
                x = training_batch(images, augment, mean, std)
            with accelerator.autocast():
                loss = criterion(model(x).float(), targets)
            accelerator.backward(loss)
            if cfg.clip_grad:
                accelerator.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            summed_loss += loss.detach() * len(targets)
            seen += len(targets)
            if step % 10 == 0:  # reading the loss waits for the GPU to finish, so not every step
                bar.set_postfix(loss=f"{summed_loss.item() / seen:.4f}")
        total_loss = summed_loss.item()

        val_logits, val_targets = _predict(model, val_loader, accelerator, mean, std)
        val_probs = val_logits.softmax(dim=1)[:, 1].numpy()
        val = binary_metrics(val_targets.numpy(), val_probs, 0.5, n_bootstrap=0)
        val_loss = nn.functional.cross_entropy(val_logits, val_targets).item()
        auc = val["auc"] if val["auc"] is not None else 0.0
        collapsed = len(set((val_probs >= 0.5).tolist())) == 1
        row = {
            "epoch": epoch,
            "train_loss": total_loss / max(seen, 1),
            "val_loss": val_loss,
            "val_auc": auc,
            "val_accuracy": val["accuracy"],
            "val_sensitivity": val["sensitivity"],
            "val_specificity": val["specificity"],
            "lr": optimizer.param_groups[-1]["lr"],
            "seconds": round(time.time() - started, 1),
        }
        accelerator.log({k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "epoch"}, step=epoch)
        state["history"].append(row)
        # AUC saturates on easy data (1.0 on several epochs); the validation loss breaks such ties.
        improved = auc > state["best_auc"] or (auc == state["best_auc"] and val_loss < state["best_val_loss"])
        if improved:
            state.update(best_auc=auc, best_val_loss=val_loss, best_epoch=epoch, stale_epochs=0)
        else:
            state["stale_epochs"] += 1
            if state["stale_epochs"] % 2 == 0:
                state["lr_scale"] *= 0.5  # only read by the plateau schedule
        state["epoch"] = epoch
        log(
            f"epoch {epoch}: train loss {row['train_loss']:.4f}, val loss {val_loss:.4f}, val AUC {auc:.4f}, "
            f"val acc {val['accuracy']:.4f}{' *' if improved else ''}"
        )
        if collapsed:
            only = labels[int(val_probs[0] >= 0.5)]
            log(f"warning: class collapse: the model predicts only '{only}' on every validation image")

        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            if improved:
                save_model(
                    accelerator.unwrap_model(model, keep_torch_compile=False), str(out / (BEST_WEIGHTS + ".tmp"))
                )
                (out / (BEST_WEIGHTS + ".tmp")).replace(out / BEST_WEIGHTS)
            _write_history(out, state["history"])

        _save_checkpoint(accelerator, checkpoint, {"config": dataclasses.asdict(cfg), "state": state})

    result = _finish(cfg, accelerator, model, val_loader, test_loader, decoded, state, mean, std)
    accelerator.end_training()  # also ends the process group, so it comes after the last collective
    return result


def _save_checkpoint(accelerator: Accelerator, checkpoint: Path, trainer_state: dict) -> None:
    """Every process writes its part (model, optimizer, RNG states) into a temporary folder; the main
    process then swaps it in, so a kill at any moment leaves the previous checkpoint intact."""
    tmp, old = checkpoint.with_name(checkpoint.name + ".tmp"), checkpoint.with_name(checkpoint.name + ".old")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps(trainer_state, indent=1))
        if checkpoint.exists():
            checkpoint.rename(old)
        tmp.rename(checkpoint)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _finish(cfg, accelerator, model, val_loader, test_loader, decoded, state, mean, std) -> Path:
    """Best weights -> temperature and threshold from validation -> one look at the test split -> folder."""
    out = Path(cfg.output_dir)
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model, keep_torch_compile=False)
    load_model(unwrapped, str(out / BEST_WEIGHTS))  # read on the CPU, copied into the parameters wherever they live
    val_logits, val_targets = _predict(model, val_loader, accelerator, mean, std)
    test_logits, test_targets = _predict(model, test_loader, accelerator, mean, std)
    if not accelerator.is_main_process:
        return out
    temperature = fit_temperature(val_logits, val_targets)
    val_probs = (val_logits / temperature).softmax(dim=1)[:, 1].numpy()
    threshold = choose_threshold(val_targets.numpy(), val_probs, cfg.threshold)
    test_probs = (test_logits / temperature).softmax(dim=1)[:, 1].numpy()
    metrics = {
        "validation": binary_metrics(val_targets.numpy(), val_probs, threshold, decoded["validation"].groups),
        "test": binary_metrics(test_targets.numpy(), test_probs, threshold, decoded["test"].groups),
    }
    collapsed = len(set((test_probs >= threshold).tolist())) == 1
    config = unwrapped.config
    config.temperature, config.threshold = temperature, threshold
    config.model_args = {k: v for k, v in config.model_args.items() if k != "pretrained_backbone"}
    config.training = {
        "task": cfg.task or ", ".join(cfg.data),
        "data": ", ".join(cfg.data),
        "splits": {name: len(d) for name, d in decoded.items()},
        "class_counts": {name: d.class_counts() for name, d in decoded.items()},
        "metrics": metrics,
        "best_epoch": state["best_epoch"],
        "epochs_run": state["epoch"],
        "recipe": _recipe(cfg, accelerator),
        "threshold_rule": cfg.threshold,
        "class_collapse_on_test": collapsed,
        "command": " ".join(sys.argv),
    }
    unwrapped.to("cpu", memory_format=torch.contiguous_format)
    save_pretrained(unwrapped, out, model_card=render_model_card(config))
    from .plots import write_plots  # matplotlib only when a run finishes

    write_plots(out / "plots", test_targets.numpy(), test_probs, threshold, config.labels, state["history"])
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    accelerator.print(f"test: {summarize(metrics['test'])}; wrote {out}")
    if collapsed:
        accelerator.print("warning: class collapse: the final model gives every test image the same label")
    return out


def _recipe(cfg: TrainConfig, accelerator: Accelerator) -> str:
    return (
        f"{cfg.model} from {'ImageNet weights' if cfg.pretrained else 'scratch'}, {cfg.input_size}px, "
        f"up to {cfg.epochs} epochs (early stopping on validation AUC, patience {cfg.patience}), batch {cfg.batch_size} "
        f"x {accelerator.num_processes} process(es), AdamW lr {cfg.lr} wd {cfg.weight_decay}, {cfg.warmup_epochs} warm-up "
        f"epoch(s) then {cfg.scheduler}, {cfg.loss} loss{' with class weights' if cfg.class_weights else ''}, "
        f"augmentation '{cfg.augment}', mixed precision {accelerator.mixed_precision}; temperature scaling and a "
        f"'{cfg.threshold}' threshold fitted on validation."
    )


def _check_no_shared_groups(decoded: dict[str, DecodedSplit]) -> None:
    seen: dict[str, str] = {}
    for name, split in decoded.items():
        for group in set(split.groups):
            if group in seen and seen[group] != name:
                raise DataError(f"group {group!r} is in both {seen[group]} and {name}: the splits leak")
            seen[group] = name


def _check_resume_compatible(saved: dict, cfg: TrainConfig) -> None:
    must_match = ("data", "model", "input_size", "batch_size", "augment", "seed", "epochs", "lr")
    different = [k for k in must_match if saved.get(k) != getattr(cfg, k)]
    if different:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {getattr(cfg, k)!r}" for k in different)
        raise ConfigError(f"--resume with different settings ({detail}); use a new output_dir instead")


def _write_history(out: Path, history: list[dict]) -> None:
    with open(out / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
