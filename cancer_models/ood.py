"""Is an image like the ones a model was trained on? Mahalanobis distance of mid-level features.

The features are the spatial means of the outputs of ``model.ood_layers()`` (mid-level stages: colour and
texture statistics that a photo, a drawing or another modality does not share). The detector holds one
mean per class and a shared, shrunk (Ledoit-Wolf) precision matrix fitted on the training split
(``calibrate.fit_detector``); an image's score is its squared distance to the nearest class mean, and its threshold is the quantile of
the validation split's scores at the stated acceptance rate (Lee et al., 2018, on pooled features).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

OOD_WEIGHTS_NAME = "ood.safetensors"


@contextmanager
def tap_features(layers: Sequence[nn.Module]) -> Iterator[list[torch.Tensor]]:
    """While open, every forward pass appends the spatially pooled, concatenated outputs of ``layers``."""
    outputs: dict[int, torch.Tensor] = {}
    pooled: list[torch.Tensor] = []

    def keep(index: int):
        def hook(module: nn.Module, args, output: torch.Tensor) -> None:
            outputs[index] = output.float().mean(dim=(2, 3))
            if len(outputs) == len(layers):
                pooled.append(torch.cat([outputs[i] for i in range(len(layers))], dim=1))
                outputs.clear()

        return hook

    handles = [layer.register_forward_hook(keep(i)) for i, layer in enumerate(layers)]
    try:
        yield pooled
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class MahalanobisDetector:
    means: torch.Tensor  # (classes, features)
    precision: torch.Tensor  # (features, features)

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance to the nearest class mean: higher is more unusual."""
        diff = features.float().cpu()[:, None, :] - self.means[None]  # (N, classes, features)
        return torch.einsum("ncf,fg,ncg->nc", diff, self.precision, diff).min(dim=1).values

    def save(self, path: str | Path) -> None:
        save_file({"means": self.means.contiguous(), "precision": self.precision.contiguous()}, str(path))

    @classmethod
    def load(cls, path: str | Path) -> MahalanobisDetector:
        tensors = load_file(str(path))
        return cls(tensors["means"], tensors["precision"])
