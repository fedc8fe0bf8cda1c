"""Transfer-learning classifiers: a torchvision backbone with the project's dense head.

Head: Dropout(0.5) - Linear(features, 128) - ReLU - Dropout(0.3) - Linear(128, 2). Every variant is one
registry entry over ``TransferClassifier``; only how to cut the torchvision model into a feature
extractor differs, and that lives in ``BACKBONES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import CheckpointError
from ._registry import register_model
from .base import CancerModel, dense_head


@dataclass(frozen=True)
class _Backbone:
    weights: str  # torchvision weights enum member, used only with pretrained_backbone=True
    num_features: int
    # Turns the torchvision classifier into a module that returns the last feature map.
    trunk: Callable[[nn.Module], nn.Module]
    # Indices in the trunk of the mid-level blocks whose pooled outputs the out-of-distribution check uses.
    ood_blocks: tuple[int, int]
    # The same ImageNet weights on the Hub (timm's copies of torchvision's), for the card's base_model.
    hub_id: str | None = None


def _resnet_trunk(m: nn.Module) -> nn.Module:
    return nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3, m.layer4)


def _features_trunk(m: nn.Module) -> nn.Module:
    return m.features


BACKBONES = {
    # ResNets: layer2 and layer3; VGG16: the pooled outputs of blocks 3 and 4.
    "resnet18": _Backbone("ResNet18_Weights.IMAGENET1K_V1", 512, _resnet_trunk, (5, 6), "timm/resnet18.tv_in1k"),
    "resnet34": _Backbone("ResNet34_Weights.IMAGENET1K_V1", 512, _resnet_trunk, (5, 6), "timm/resnet34.tv_in1k"),
    "resnet50": _Backbone("ResNet50_Weights.IMAGENET1K_V2", 2048, _resnet_trunk, (5, 6), "timm/resnet50.tv2_in1k"),
    "mobilenet_v2": _Backbone("MobileNet_V2_Weights.IMAGENET1K_V2", 1280, _features_trunk, (7, 14)),
    "efficientnet_b0": _Backbone("EfficientNet_B0_Weights.IMAGENET1K_V1", 1280, _features_trunk, (4, 6)),
    "vgg16": _Backbone("VGG16_Weights.IMAGENET1K_V1", 512, _features_trunk, (16, 23), "timm/vgg16.tv_in1k"),
}


def _torchvision_model(name: str, weights: str | None) -> nn.Module:
    """torchvision's ``name``, with ImageNet ``weights`` from torch's cache (downloaded there the first time)."""
    # Imported here: torchvision's import takes seconds, and only transfer models need it.
    import torchvision

    if weights is None:
        return torchvision.models.get_model(name)
    try:
        return torchvision.models.get_model(name, weights=weights)
    # No network and no cached file (URLError), or a corrupt cached file: unpickling garbage can raise
    # almost any exception type, and every failure of this one call means the same thing.
    except Exception as e:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(torchvision.models.get_weight(weights).url).name
        raise CheckpointError(
            f"ImageNet weights {weights} for {name} are not usable from torch's cache ({cached}) and could not "
            f"be downloaded ({type(e).__name__}: {e}). Run once with network, or copy the file there."
        ) from e


class TransferClassifier(CancerModel):
    """A torchvision backbone (the config's architecture) under the dense head."""

    default_architecture = "resnet34"
    has_backbone = True

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__(config)
        args = self.model_args(
            pretrained_backbone=False,
            freeze_backbone=False,
            head_hidden=128,
            drop_rate=0.5,
            head_drop_rate=0.3,
            num_classes=2,
        )
        spec = BACKBONES[self.config.architecture]
        tv_model = _torchvision_model(self.config.architecture, spec.weights if args.pretrained_backbone else None)
        self.features = spec.trunk(tv_model)
        self.num_features = spec.num_features
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head = dense_head(
            spec.num_features, args.head_hidden, args.drop_rate, args.head_drop_rate, args.num_classes
        )
        self.set_backbone_frozen(args.freeze_backbone)

    def set_backbone_frozen(self, frozen: bool) -> None:
        """Freeze (or unfreeze) the backbone: no gradients, and its BatchNorm statistics stay fixed."""
        self.backbone_frozen = frozen
        self.features.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> TransferClassifier:
        super().train(mode)
        if self.backbone_frozen:
            self.features.eval()
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def default_cam_layers(self) -> list[str]:
        last = len(self.features) - 1
        if isinstance(self.features[last], nn.MaxPool2d):  # VGG: explain the last conv stage, before its pooling
            last -= 1
        return [f"features.{last}"]

    def cam_layer_candidates(self) -> list[list[str]]:
        # The default, then the blocks the out-of-distribution check reads (mid-level stages, finer maps).
        blocks = BACKBONES[self.config.architecture].ood_blocks
        return [self.default_cam_layers(), *([f"features.{i}"] for i in reversed(blocks))]

    def ood_layers(self) -> list[nn.Module]:
        return [self.features[i] for i in BACKBONES[self.config.architecture].ood_blocks]

    def parameter_groups(self) -> list[dict[str, Any]]:
        return [
            {"name": "backbone", "params": list(self.features.parameters())},
            {"name": "head", "params": list(self.head.parameters())},
        ]


for _name in BACKBONES:
    register_model(_name)(TransferClassifier)
