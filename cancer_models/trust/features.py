"""What the trust checks look at: a model's pooled mid-level features, and 22 statistics of the image itself."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

CHROMA = slice(9, 12)  # the columns of image_statistics() that hold |R-G|, |G-B| and |R-B|
TEXTURE = 20  # the column of image_statistics() that holds the Laplacian energy (fine texture, sharpness)


class Tapped(list):
    """The pooled features of each forward pass, and how many of their columns each layer gave."""

    sizes: list[int]


@contextmanager
def tap_features(layers: Sequence[nn.Module]) -> Iterator[Tapped]:
    """While open, every forward pass appends the spatially pooled, concatenated outputs of ``layers``."""
    outputs: dict[int, torch.Tensor] = {}
    pooled = Tapped()

    def keep(index: int):
        def hook(module: nn.Module, args, output: torch.Tensor) -> None:
            outputs[index] = output.float().mean(dim=(2, 3))
            if len(outputs) == len(layers):
                pooled.sizes = [outputs[i].shape[1] for i in range(len(layers))]
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
    """(N, 22) statistics of a uint8-scale batch (N, 3, H, W): what an image looks like before any network.

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
    laplacian = (
        (
            grey[:, :, 1:-1, 1:-1] * 4
            - grey[:, :, :-2, 1:-1]
            - grey[:, :, 2:, 1:-1]
            - grey[:, :, 1:-1, :-2]
            - grey[:, :, 1:-1, 2:]
        )
        .abs()
        .mean(dim=(1, 2, 3))
    )
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
