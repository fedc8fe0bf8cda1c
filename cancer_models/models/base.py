"""The interface every architecture implements, and the Hub methods they all share."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from ..config import ModelConfig


def dense_head(
    in_features: int, hidden: int, drop_rate: float, head_drop_rate: float, num_classes: int
) -> nn.Sequential:
    """Dropout - Linear - ReLU - Dropout - Linear: the classifier every family puts after pooling."""
    return nn.Sequential(
        nn.Dropout(drop_rate),
        nn.Linear(in_features, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(head_drop_rate),
        nn.Linear(hidden, num_classes),
    )


class CancerModel(nn.Module):
    """A binary classifier: images in, logits ``[benign, malignant]`` out.

    Subclasses split the network timm-style into ``forward_features`` (the last feature map, which is
    what Grad-CAM looks at) and ``forward_head`` (pooling and classifier), and name their own
    Grad-CAM target layers. ``config`` is attached by ``create_model`` / ``load_pretrained``.
    """

    config: ModelConfig
    global_pool: nn.Module
    head: nn.Module

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def cam_target_layers(self) -> list[nn.Module]:
        """The layers whose activations Grad-CAM should explain."""
        raise NotImplementedError

    def save_pretrained(self, save_directory: str | Path, model_card: str | None = None) -> Path:
        from ..hub import save_pretrained

        return save_pretrained(self, save_directory, model_card=model_card)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, revision: str | None = None, **kwargs) -> CancerModel:
        from ..hub import load_pretrained

        model = load_pretrained(name_or_path, revision=revision, **kwargs)
        if not isinstance(model, cls):
            raise TypeError(f"{name_or_path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    def push_to_hub(self, repo_id: str, **kwargs) -> str:
        from ..hub import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)
