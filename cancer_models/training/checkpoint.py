"""What a run keeps on disk while it trains: the resumable checkpoint, the best weights so far, the history."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from safetensors.torch import load_model, save_model
from torch import nn

from .config import STATE_FILE, TrainConfig, check_resume_compatible

BEST_WEIGHTS = "best.safetensors"


@dataclass
class TrainerState:
    """Where a run stands after its last finished epoch (checkpointed with it)."""

    epoch: int = 0
    step: int = 0  # optimizer steps taken
    best_auc: float = -1.0
    best_val_loss: float = math.inf
    best_epoch: int = 0
    stale_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def record(self, row: dict[str, Any]) -> bool:
        """Add an epoch's validation results; returns whether it is the best so far.

        AUC saturates on easy data (1.0 on several epochs); the validation loss breaks such ties.
        """
        auc, loss = row["val_auc"], row["val_loss"]
        improved = auc > self.best_auc or (auc == self.best_auc and loss < self.best_val_loss)
        if improved:
            self.best_auc, self.best_val_loss, self.best_epoch, self.stale_epochs = auc, loss, row["epoch"], 0
        else:
            self.stale_epochs += 1
        self.epoch = row["epoch"]
        self.history.append(row)
        return improved


def save_checkpoint(accelerator: Accelerator, cfg: TrainConfig, state: TrainerState) -> None:
    """Every process writes its part (model, optimizer, schedulers, RNG states) into a temporary folder; the main
    process then swaps it in, so a kill at any moment leaves the previous checkpoint intact."""
    checkpoint = cfg.checkpoint_dir
    tmp, old = checkpoint.with_name(checkpoint.name + ".tmp"), checkpoint.with_name(checkpoint.name + ".old")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        saved = {"config": dataclasses.asdict(cfg), "state": dataclasses.asdict(state)}
        (tmp / STATE_FILE).write_text(json.dumps(saved, indent=1))
        if checkpoint.exists():
            checkpoint.rename(old)
        tmp.rename(checkpoint)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def load_checkpoint(accelerator: Accelerator, cfg: TrainConfig) -> TrainerState:
    """Restore everything ``save_checkpoint`` wrote (after checking the run's settings match)."""
    saved = json.loads((cfg.checkpoint_dir / STATE_FILE).read_text())
    check_resume_compatible(saved["config"], cfg)
    accelerator.load_state(str(cfg.checkpoint_dir))
    return TrainerState(**saved["state"])


def save_best_weights(accelerator: Accelerator, model: nn.Module, out: Path) -> None:
    if accelerator.is_main_process:
        tmp = out / (BEST_WEIGHTS + ".tmp")
        save_model(accelerator.unwrap_model(model, keep_torch_compile=False), str(tmp))
        tmp.replace(out / BEST_WEIGHTS)


def load_best_weights(model: nn.Module, out: Path) -> None:
    """Read on the CPU and copied into the parameters wherever they live."""
    load_model(model, str(out / BEST_WEIGHTS))


def write_history(out: Path, history: list[dict[str, Any]]) -> None:
    with open(out / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
