"""Is an image like the ones a model was trained on? Mahalanobis distances of mid-level features and of
simple image statistics.

The features are the spatial means of the outputs of ``model.ood_layers()`` (mid-level stages: colour and
texture statistics that a photo, a drawing or another modality does not share; an ensemble's come from every
member). The detector holds one mean per class and a shared, shrunk (Ledoit-Wolf) precision matrix fitted on
the training split (``calibrate.fit_detector``); an image's score is its squared distance to the nearest class
mean (Lee et al., 2018, on pooled features). A second distance, on ``image_statistics`` (colour, saturation,
grey-ness, brightness, texture), catches what a network never learnt to tell apart because its training data
never varied there: a grey chest X-ray has no colour at all, unlike any dermoscopy photo.

Each distance has its own limit, a quantile of held-out images' scores; an image's *unusualness* is the larger
of its two distances as a multiple of its limit, so above 1 means refused.
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


def image_statistics(batch: torch.Tensor) -> torch.Tensor:
    """(N, 21) statistics of a uint8-scale batch (N, 3, H, W): what an image looks like before any network.

    Per channel mean and spread; saturation (mean, spread, 90th percentile) and the mean difference between
    channels (zero for a grey image); brightness percentiles and the shares of near-black and near-white
    pixels; gradient and Laplacian energy (texture, sharpness); brightness entropy.
    """
    x = batch.float() / 255
    n = len(x)
    lum = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).reshape(n, -1)
    top, bottom = x.amax(dim=1), x.amin(dim=1)
    saturation = ((top - bottom) / top.clamp_min(1e-3)).reshape(n, -1)
    chroma = (x[:, [0, 1, 0]] - x[:, [1, 2, 2]]).abs().mean(dim=(2, 3))  # |R-G|, |G-B|, |R-B|
    grey = lum.view(n, 1, *x.shape[2:])
    gradient = (grey.diff(dim=2).abs().mean(dim=(1, 2, 3)) + grey.diff(dim=3).abs().mean(dim=(1, 2, 3))) / 2
    laplacian = (grey[:, :, 1:-1, 1:-1] * 4 - grey[:, :, :-2, 1:-1] - grey[:, :, 2:, 1:-1] - grey[:, :, 1:-1, :-2]
                 - grey[:, :, 1:-1, 2:]).abs().mean(dim=(1, 2, 3))
    histogram = torch.stack([torch.histc(row, bins=32, min=0, max=1) for row in lum]) / lum.shape[1]
    entropy = -(histogram * histogram.clamp_min(1e-12).log()).sum(dim=1)
    return torch.cat(
        [
            x.mean(dim=(2, 3)),
            x.std(dim=(2, 3)),
            saturation.mean(dim=1, keepdim=True),
            saturation.std(dim=1, keepdim=True),
            saturation.quantile(0.9, dim=1, keepdim=True),
            chroma,
            lum.quantile(torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95]), dim=1).T,
            (lum < 0.08).float().mean(dim=1, keepdim=True),
            (lum > 0.92).float().mean(dim=1, keepdim=True),
            gradient[:, None],
            laplacian[:, None],
            entropy[:, None],
        ],
        dim=1,
    )


@dataclass
class MahalanobisDetector:
    means: torch.Tensor  # (classes, features)
    precision: torch.Tensor  # (features, features)
    # The same distance on image_statistics(), with one mean for all classes; None for folders fitted before
    # it existed (their check rests on the features alone).
    image: MahalanobisDetector | None = None

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance to the nearest class mean: higher is more unusual."""
        diff = features.float().cpu()[:, None, :] - self.means[None]  # (N, classes, features)
        return torch.einsum("ncf,fg,ncg->nc", diff, self.precision, diff).min(dim=1).values

    def unusualness(self, features: torch.Tensor, batch: torch.Tensor, limits: dict) -> torch.Tensor:
        """Each image's larger distance as a multiple of its limit (``config.ood``): above 1 is refused."""
        ratio = self.score(features) / limits["threshold"]
        if self.image is not None:
            ratio = torch.maximum(ratio, self.image.score(image_statistics(batch)) / limits["image_threshold"])
        return ratio

    def tensors(self) -> dict[str, torch.Tensor]:
        tensors = {"means": self.means.contiguous(), "precision": self.precision.contiguous()}
        if self.image is not None:
            tensors |= {f"image.{k}": v for k, v in self.image.tensors().items()}
        return tensors

    def save(self, path: str | Path) -> None:
        save_file(self.tensors(), str(path))

    @classmethod
    def load(cls, path: str | Path) -> MahalanobisDetector:
        tensors = load_file(str(path))
        image = cls(tensors["image.means"], tensors["image.precision"]) if "image.means" in tensors else None
        return cls(tensors["means"], tensors["precision"], image)
