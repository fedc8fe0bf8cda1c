"""What a model does to a resized uint8 batch before its first layer: its colour constancy, then its mean/std
normalisation, channels-last. It belongs to the model (its config says which), so training, evaluation, the app,
Grad-CAM and the ONNX export all go through ``model_input``."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from ..config import ModelConfig


def model_input(batch: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """uint8-scale (N, 3, H, W) -> what a model with ``config`` sees: its colour constancy, then its mean/std,
    channels-last. Training, evaluation, the app and Grad-CAM all go through here."""
    if config.colour_constancy == "shades_of_gray":
        batch = shades_of_gray(batch)
    elif config.colour_constancy == "optical_density":
        batch = optical_density_balance(batch)
    return normalize(batch, config.mean, config.std).contiguous(memory_format=torch.channels_last)


def shades_of_gray(batch: torch.Tensor, p: int = 6) -> torch.Tensor:
    """Shades of Gray colour constancy (Finlayson & Trezzi, 2004) on a uint8-scale float batch (N, 3, H, W).

    Each image's illuminant is estimated per channel as the Minkowski p-norm mean of its pixels and divided
    out: a grey-world (p = 1) that leans towards the brightest pixels (p = 6, as in strong ISIC entries). The
    gains are scaled so that a neutral (grey) image is unchanged; a colour cast is removed up to one overall
    brightness factor.
    """
    x = batch.float()
    illuminant = x.clamp(min=0).div(255).pow(p).mean(dim=(2, 3)).pow(1 / p).clamp(min=1e-6)  # (N, 3)
    gain = illuminant.norm(dim=1, keepdim=True) / (illuminant * 3**0.5)
    return x.mul(gain[:, :, None, None]).clamp_(0, 255)


# The reference mean optical density of R, G and B over tissue: that of LC25000's training tiles (300 sampled at
# 128 px). GlaS's lie at (0.31, 0.93, 0.30): more eosin and haematoxylin, a more purple lab.
REFERENCE_OD = (0.39, 0.65, 0.16)
# Pixels whose optical densities sum to more than this are tissue; white background and glass below it.
TISSUE_OD = 0.3


def optical_density_balance(batch: torch.Tensor) -> torch.Tensor:
    """Stain density normalisation for H&E on a uint8-scale batch (N, 3, H, W): each channel's optical density
    (-ln of transmitted light) is scaled so that its mean over the image's tissue pixels is ``REFERENCE_OD``.

    Light passing through a stain loses a share per unit of dye (Beer-Lambert), so one lab staining twice as long
    as another doubles the optical densities; scaling them per image takes out the lab's stain strength and
    balance (a diagonal stain model, grey-world in optical density) and keeps each pixel's share of it. Gains are
    held within [0.25, 4]; an image without tissue (blank, glass) is left as it is.
    """
    x = batch.float()
    od = -torch.log((x + 1) / 256)
    tissue = (od.sum(dim=1, keepdim=True) > TISSUE_OD).float()
    pixels = tissue.sum(dim=(2, 3))  # (N, 1)
    mean = (od * tissue).sum(dim=(2, 3)) / pixels.clamp(min=1)
    reference = torch.tensor(REFERENCE_OD, device=x.device)
    gain = torch.where(pixels > 0, (reference / mean.clamp(min=1e-3)).clamp(0.25, 4.0), torch.ones_like(mean))
    return (256 * torch.exp(-od * gain[:, :, None, None]) - 1).clamp(0, 255)


def normalize(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8-scale (N, 3, H, W) -> float32 normalised with ``mean``/``std`` given on the [0, 1] scale.

    Never modifies ``batch`` (``.float()`` of a float tensor is the same tensor, so the first step is
    out of place).
    """
    x = batch.float() / 255
    mean_t, std_t = _channel_stats(tuple(mean), tuple(std), x.device)
    return x.sub_(mean_t).div_(std_t)


@functools.lru_cache(maxsize=16)
def _channel_stats(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    # Cached: a tensor built from Python values on a GPU is a copy that first waits for all queued GPU work.
    return tuple(torch.tensor(v, device=device).view(1, -1, 1, 1) for v in (mean, std))
