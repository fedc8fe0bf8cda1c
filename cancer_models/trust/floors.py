"""The colour and texture floors: an image with too little colour (a grey X-ray shown to a colour modality's model)
or too little fine texture (a blank or flat image) is refused whatever the distances say, because a distance over
many statistics dilutes the one that matters.
"""

from __future__ import annotations

import torch

from ..settings import TrustSettings
from .features import CHROMA, TEXTURE
from .groups import group_max

# A floor is the least colourful (least textured) held-out group's value at the acceptance quantile divided by
# this: a faded, pale or blurred image of the right kind passes, a grey (colourfulness 0) or flat one (texture 0)
# never does.
FLOOR_MARGIN = 2.0
# Below a floor an image's ratio grows as floor / value; capped so that a grey or flat image reads as
# "far beyond the limit" rather than as an arbitrary huge number.
MAX_FLOOR_RATIO = 100.0


def colourfulness(statistics: torch.Tensor) -> torch.Tensor:
    """(N,) mean absolute difference between colour channels (0-1 scale) from ``image_statistics``: 0 for grey."""
    return statistics[:, CHROMA].mean(dim=1)


def texture(statistics: torch.Tensor) -> torch.Tensor:
    """(N,) mean absolute Laplacian of the brightness (0-1 scale) from ``image_statistics``: 0 for a flat image."""
    return statistics[:, TEXTURE]


def fit_colour_floor(statistics: torch.Tensor, groups: list[str], acceptance: float) -> float:
    """The least colour an image may have: the ``1 - acceptance`` quantile of the held-out groups' least colourful
    images, divided by ``FLOOR_MARGIN``. About 0 for a grey modality, whose check it leaves as it was."""
    return _fit_floor(colourfulness(statistics), groups, acceptance)


def fit_texture_floor(statistics: torch.Tensor, groups: list[str], acceptance: float) -> float:
    """The least fine texture an image may have, fitted as the colour floor is."""
    return _fit_floor(texture(statistics), groups, acceptance)


def _fit_floor(values: torch.Tensor, groups: list[str], acceptance: float) -> float:
    least = -group_max(-values.double(), groups)
    return float(torch.quantile(least, 1 - acceptance)) / FLOOR_MARGIN


def floor_ratio(values: torch.Tensor, floor: float | None) -> torch.Tensor:
    """(N,) floor / value (above 1: too little of it for the model), capped at ``MAX_FLOOR_RATIO``; zeros
    without a floor."""
    if not floor or floor <= 0:
        return torch.zeros(len(values))
    return (floor / values.double().clamp_min(floor / MAX_FLOOR_RATIO)).float()


def colour_ratio(statistics: torch.Tensor, ood: TrustSettings) -> torch.Tensor:
    """(N,) colour floor / colourfulness (above 1: too little colour for the model), or zeros without a floor."""
    return floor_ratio(colourfulness(statistics), ood.colour_floor)


def texture_ratio(statistics: torch.Tensor, ood: TrustSettings) -> torch.Tensor:
    """(N,) texture floor / texture (above 1: too flat for the model), or zeros without a floor."""
    return floor_ratio(texture(statistics), ood.texture_floor)
