"""One epoch of training and one pass over a split: nothing device-specific, Accelerate owns devices."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..config import ModelConfig
from ..data.decoding import DecodedSplit
from ..data.streaming import StreamedSplit
from ..evaluation.metrics import binary_metrics
from ..models import CancerModel
from ..models.preprocessing import model_input
from ..record import Provenance
from .config import TrainConfig
from .guidance import outside_lesion_share, tap_activations


@dataclass
class Run:
    """A training run's parts after ``accelerator.prepare``."""

    cfg: TrainConfig
    accelerator: Accelerator
    model: nn.Module  # possibly wrapped (DDP, torch.compile): use ``unwrapped`` for the CancerModel
    optimizer: torch.optim.Optimizer
    step_scheduler: LRScheduler
    epoch_scheduler: ReduceLROnPlateau | None
    loaders: dict[str, DataLoader]
    decoded: dict[str, DecodedSplit]
    augment: nn.Module
    criterion: nn.Module
    started: float
    provenance: Provenance  # the code and libraries, taken when the run started
    streamed: StreamedSplit | None = None  # --streaming: the training stream (decoded["train"] is a sample of it)
    steps_per_epoch: int | None = None  # where the training loader has no length (a stream)

    @property
    def unwrapped(self) -> CancerModel:
        return self.accelerator.unwrap_model(self.model, keep_torch_compile=False)

    def log(self, message: str) -> None:
        self.accelerator.print(message)


def training_batch(
    images: torch.Tensor,
    augment: nn.Module,
    config: ModelConfig,
    masks: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What the model trains on: a uint8 batch augmented in [0, 1], then normalised like at inference; and
    the batch's uint8 lesion masks, if given, moved by the same geometry, in [0, 1]."""
    x = images.float().div(255)
    if masks is not None:
        x = torch.cat([x, masks.float().div(255)], dim=1)
    x = augment(x)
    x, masks = (x, None) if masks is None else (x[:, :3], x[:, 3:])
    return model_input(x.mul(255), config), masks


def training_loss(run: Run, x: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
    """The loss, plus ``mask_loss`` times the Grad-CAM share outside the lesion where there are masks."""
    if masks is None or not run.cfg.mask_loss:
        with run.accelerator.autocast():
            return run.criterion(run.model(x).float(), targets)
    with run.accelerator.autocast(), tap_activations(run.unwrapped.cam_target_layers()) as activations:
        logits = run.model(x).float()
    chosen = logits.gather(1, targets[:, None]).squeeze(1)
    return run.criterion(logits, targets) + run.cfg.mask_loss * outside_lesion_share(activations, chosen, masks)


def train_one_epoch(run: Run, epoch: int, max_steps: int | None = None) -> tuple[float, int]:
    """One pass over the training split, or its first ``max_steps`` batches; returns the mean training loss and
    the number of optimizer steps taken."""
    cfg, accelerator, config = run.cfg, run.accelerator, run.unwrapped.config
    if run.unwrapped.has_backbone:
        run.unwrapped.set_backbone_frozen(epoch <= cfg.freeze_epochs)
    run.model.train()
    run.loaders["train"].set_epoch(epoch)
    summed_loss, seen = torch.zeros((), device=accelerator.device), 0
    bar = tqdm(
        run.loaders["train"],
        desc=f"epoch {epoch}/{cfg.epochs}",
        disable=not accelerator.is_local_main_process,
        leave=False,
    )
    step, limits = 0, [n for n in (max_steps, run.steps_per_epoch) if n]
    max_steps = min(limits) if limits else None
    for step, (images, targets, *masks) in enumerate(bar, 1):
        with torch.no_grad():
            x, lesions = training_batch(images, run.augment, config, *masks)
        loss = training_loss(run, x, targets, lesions)
        accelerator.backward(loss)
        if cfg.clip_grad:
            accelerator.clip_grad_norm_(run.model.parameters(), cfg.clip_grad)
        run.optimizer.step()
        run.step_scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        summed_loss += loss.detach() * len(targets)
        seen += len(targets)
        if step % 10 == 0:  # reading the loss waits for the GPU to finish, so not every step
            bar.set_postfix(loss=f"{summed_loss.item() / seen:.4f}")
        if step == max_steps:
            break
    return summed_loss.item() / max(seen, 1), step


@torch.no_grad()
def predict_split(run: Run, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and targets over a whole split, gathered from every process without duplicates."""
    config = run.unwrapped.config
    run.model.eval()
    all_logits, all_targets = [], []
    for images, targets in run.loaders[split]:
        x = model_input(images, config)
        with run.accelerator.autocast():
            logits = run.model(x).float()
        logits, targets = run.accelerator.gather_for_metrics((logits, targets))
        all_logits.append(logits.cpu())
        all_targets.append(targets.cpu())
    return torch.cat(all_logits), torch.cat(all_targets)


def validate(run: Run, epoch: int, train_loss: float) -> dict[str, Any]:
    """The epoch's row of the history: training loss and validation metrics at 0.5."""
    logits, targets = predict_split(run, "validation")
    probs = logits.softmax(dim=1)[:, 1].numpy()
    val = binary_metrics(targets.numpy(), probs, 0.5, n_bootstrap=0)
    if len(set((probs >= 0.5).tolist())) == 1:
        only = run.unwrapped.config.labels[int(probs[0] >= 0.5)]
        run.log(f"warning: class collapse: the model predicts only '{only}' on every validation image")
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "val_loss": nn.functional.cross_entropy(logits, targets).item(),
        "val_auc": val["auc"] if val["auc"] is not None else 0.0,
        "val_accuracy": val["accuracy"],
        "val_sensitivity": val["sensitivity"],
        "val_specificity": val["specificity"],
        "lr": run.optimizer.param_groups[-1]["lr"],
        "seconds": round(time.time() - run.started, 1),
    }
