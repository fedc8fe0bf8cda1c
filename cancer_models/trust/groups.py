"""Scores per held-out group: near-copies of one source image count once, by their most unusual copy."""

from __future__ import annotations

import torch


def group_max(scores: torch.Tensor, groups: list[str]) -> torch.Tensor:
    """(groups,) the largest of ``scores`` within each group, in the order groups first appear."""
    index = {g: k for k, g in enumerate(dict.fromkeys(groups))}
    keys = torch.tensor([index[g] for g in groups])
    return torch.full((len(index),), -torch.inf, dtype=torch.float64).scatter_reduce(
        0, keys, scores.double(), reduce="amax"
    )
