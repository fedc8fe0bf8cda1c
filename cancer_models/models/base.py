"""The interface every architecture implements; the Hub format comes from ``HubMixin``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, ClassVar

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError
from ._registry import build_from_config, default_config
from .hub import HubMixin


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


class CancerModel(nn.Module, HubMixin):
    """A binary classifier: images in, logits ``[benign, malignant]`` out, built from its ``ModelConfig``.

    Subclasses split the network timm-style into ``forward_features`` (the last feature map, which is
    what Grad-CAM looks at) and ``forward_head`` (pooling and classifier), and name their own
    Grad-CAM target layers. Built without a config, a model gets its architecture's default one.
    """

    default_architecture: ClassVar[str]
    has_backbone: ClassVar[bool] = False  # a pretrained trunk that can be frozen (transfer models)
    is_composite: ClassVar[bool] = False  # built from trained models (ensembles), not trained itself
    global_pool: nn.Module
    head: nn.Module

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else default_config(self.default_architecture)

    def model_args(self, **defaults: Any) -> SimpleNamespace:
        """The architecture's arguments: ``config.model_args`` over the family's defaults.

        Args:
            defaults: every argument the family takes, with its default.

        Returns:
            The arguments as attributes.

        Raises:
            ConfigError: an argument the family does not take.
        """
        unknown = sorted(set(self.config.model_args) - set(defaults))
        if unknown:
            raise ConfigError(
                f"bad model_args for {self.config.architecture!r}: unknown {unknown}; known: {sorted(defaults)}"
            )
        return SimpleNamespace(**{**defaults, **self.config.model_args})

    @classmethod
    def from_config(cls, config: ModelConfig) -> CancerModel:
        return build_from_config(config)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone.

        Args:
            x: normalised images (N, 3, S, S).

        Returns:
            The last feature map (N, C, h, w).
        """
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The head.

        Args:
            x: a feature map from ``forward_features``.
            pre_logits: stop at the pooled features.

        Returns:
            Logits (N, 2), or with ``pre_logits`` the pooled features (N, C).
        """
        x = self.global_pool(x).flatten(1)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (N, 3, S, S) to logits (N, 2): ``forward_head(forward_features(x))``.

        Args:
            x: a float batch already normalised with the config's mean and std.

        Returns:
            Logits before the temperature, in the config's label order.
        """
        return self.forward_head(self.forward_features(x))

    def default_cam_layers(self) -> list[str]:
        """Names of the layers explained when the config names none."""
        raise NotImplementedError

    def cam_layer_candidates(self) -> list[list[str]]:
        """Target layer choices worth measuring (``localization.choose_cam``), coarse to fine."""
        return [self.default_cam_layers()]

    def cam_target_layers(self) -> list[nn.Module]:
        """The layers whose activations CAM methods explain: the config's ``cam_layers``, else the default."""
        names = self.config.cam_layers or self.default_cam_layers()
        try:
            return [self.get_submodule(name) for name in names]
        except AttributeError as e:
            raise ConfigError(f"config field 'cam_layers' names a layer {self.config.architecture} lacks: {e}") from e

    def ood_features(self, pooled: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, list[int]]:
        """The rejection check's features from the pooled outputs of ``ood_layers()``.

        Args:
            pooled: (N, D) from ``trust.features.tap_features``.
            sizes: the columns of each layer.

        Returns:
            The features and their columns per layer (an ensemble averages its members').
        """
        return pooled, sizes

    def ood_layers(self) -> list[nn.Module]:
        """Mid-level layers whose pooled outputs describe what an image looks like (see ``ood.py``)."""
        raise NotImplementedError

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Optimizer parameter groups, each with a ``name``."""
        return [{"name": "all", "params": list(self.parameters())}]
