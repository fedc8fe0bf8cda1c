"""Loss, optimizer and learning-rate schedules, all from ``torch.nn`` and ``torch.optim``."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, ReduceLROnPlateau, SequentialLR

from ..models import CancerModel
from .config import TrainConfig


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


def build_loss(cfg: TrainConfig, class_counts: list[float]) -> nn.Module:
    weight = None
    if cfg.class_weights:
        total = sum(class_counts)
        weight = torch.tensor([total / (2 * max(c, 1)) for c in class_counts], dtype=torch.float32)
    if cfg.loss == "focal":
        return FocalLoss(cfg.focal_gamma, weight)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)


def build_optimizer(model: CancerModel, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW over the model's own parameter groups."""
    # fused: one kernel for all parameters instead of several per tensor (CPU and CUDA alike)
    return torch.optim.AdamW(model.parameter_groups(), lr=lr, weight_decay=weight_decay, fused=True)


def build_schedulers(
    cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> tuple[LRScheduler, ReduceLROnPlateau | None]:
    """(stepped after every optimizer step, stepped after every epoch with the validation AUC or None).

    Linear warm-up from lr / warmup_steps, then cosine decay to zero at the last epoch; or, with
    ``plateau``, the learning rate halves after two epochs without a better validation AUC.
    """
    warmup = max(1, round(cfg.warmup_epochs * steps_per_epoch))
    warm = LinearLR(optimizer, start_factor=1 / warmup, end_factor=1.0, total_iters=max(warmup - 1, 1))
    if cfg.scheduler == "plateau":
        return warm, ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=1, threshold=0.0)
    total = cfg.epochs * steps_per_epoch
    total = max(min(total, cfg.max_steps) if cfg.max_steps else total, warmup + 1)
    cosine = CosineAnnealingLR(optimizer, T_max=total - warmup)
    return SequentialLR(optimizer, [warm, cosine], milestones=[warmup]), None
