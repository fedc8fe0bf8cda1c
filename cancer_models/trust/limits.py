"""The limits of the distance checks, set on held-out images' scores, and an image's unusualness against them.

Each check has its own limit; an image's *unusualness* is the largest of its scores as a multiple of its limit (or
its colour or texture ratio, where larger), so above 1 means refused. Limits are quantiles over held-out groups
(near-copies of one source image, each scored by its most unusual copy), so that a split whose images come eight
to a source does not rest its limit on the single most unusual source.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..settings import TrustSettings
from .floors import colour_ratio, texture_ratio
from .groups import group_max

# The image-statistics limit is this many times its held-out quantile. Another modality, a photograph or a grey
# copy lies tens to hundreds of times further than held-out images of the model's own kind (5.8x at the least
# for the histopathology model's foreign development set), while another stain batch or exposure of the right
# kind of image moves these statistics a few times: the margin spares the latter and costs nothing on the former.
IMAGE_MARGIN = 2.0
# Limits lowered to refuse a set go this share below its least unusual image: an image scored in another batch
# differs in the last digits.
REFUSAL_MARGIN = 1e-3


def fit_limits(scores: torch.Tensor, groups: list[str], acceptance: float, layers: int) -> dict[str, Any]:
    """Limits for the columns of ``MahalanobisDetector.scores`` (``layers`` layers, the image statistics, then
    the domain score where fitted), each at the same quantile of held-out scores (the image statistics' times
    ``IMAGE_MARGIN``): the lowest quantile that accepts every image of ``acceptance`` of the held-out groups on
    all counts.

    Quantiles are taken over groups (near-copies of one source image, each scored by its most unusual copy):
    a split whose images come eight to a source has a few dozen sources, and a limit set on images would rest
    on the single most unusual of them."""
    worst = torch.stack([group_max(column, groups) for column in scores.T], dim=1)  # (groups, columns)
    margin = torch.ones(worst.shape[1], dtype=torch.float64)
    margin[layers] = IMAGE_MARGIN
    for q in np.linspace(acceptance, 1.0, 101):
        bounds = torch.quantile(worst, q, dim=0) * margin
        if (worst <= bounds).all(dim=1).double().mean() >= acceptance:
            break
    bounds = bounds.tolist()
    return {
        "layer_limits": bounds[:layers],
        "image_limit": bounds[layers],
        "domain_limit": bounds[layers + 1] if len(bounds) > layers + 1 else None,
        "acceptance": acceptance,
        "quantile": float(q),
        "over": "groups",
    }


def unusualness(scores: torch.Tensor, statistics: torch.Tensor | None, ood: TrustSettings) -> torch.Tensor:
    """(N,) the largest of ``scores`` (``MahalanobisDetector.scores``) as multiples of their limits
    (``TrustSettings.limits``), or the colour or texture ratio where that is larger."""
    ratios = (scores / torch.tensor(ood.limits())).max(dim=1).values
    if statistics is None:
        return ratios
    floors = torch.maximum(colour_ratio(statistics, ood), texture_ratio(statistics, ood))
    return torch.maximum(ratios, floors.to(ratios.dtype))


def refusing_factor(scores: torch.Tensor, statistics: torch.Tensor, ood: TrustSettings) -> float:
    """The factor (at most 1) by which the layer limits must shrink so that every image (``scores``, its
    ``statistics``) that the image statistics, the domain score and the floors let through is refused."""
    layers = len(ood.layer_limits)
    ratios = scores / torch.tensor(ood.limits())
    floors = torch.maximum(colour_ratio(statistics, ood), texture_ratio(statistics, ood))
    passes_others = (ratios[:, layers:] <= 1).all(dim=1) & (floors <= 1)
    features_only = ratios[passes_others, :layers].max(dim=1).values
    return min(1.0, float(features_only.min()) * (1 - REFUSAL_MARGIN)) if len(features_only) else 1.0
