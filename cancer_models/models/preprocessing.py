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
