"""The Mahalanobis distance: class means and a shared, shrunk precision matrix, fitted and scored.

An image's score is its squared distance to the nearest class mean (Lee et al., 2018, on pooled features). The
precision is Ledoit-Wolf's shrunk estimate, stable with a few hundred images for a few hundred features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

STATISTICS_FLOOR = 1e-3  # smallest spread of an image statistic: a constant one would give infinite distances


@dataclass
class Gaussian:
    """Class means and a shared precision matrix: the squared Mahalanobis distance to the nearest mean."""

    means: torch.Tensor  # (classes, features)
    precision: torch.Tensor  # (features, features)

    @classmethod
    def fit(cls, x: np.ndarray, targets: np.ndarray | None = None) -> Gaussian:
        """Class means and a Ledoit-Wolf precision of the class-centred columns of ``x`` (N, D); without
        ``targets``, one mean and the columns standardised first (image statistics have unrelated scales), folded
        back in: diag(1/spread) P diag(1/spread)."""
        from sklearn.covariance import LedoitWolf  # fitting only: predicting needs no scikit-learn

        classes = np.unique(targets) if targets is not None else np.zeros(1)
        labels = targets if targets is not None else np.zeros(len(x))
        means = np.stack([x[labels == c].mean(axis=0) for c in classes])
        centred = x - means[np.searchsorted(classes, labels)]
        spread = np.maximum(centred.std(axis=0), STATISTICS_FLOOR) if targets is None else np.ones(x.shape[1])
        precision = LedoitWolf().fit(centred / spread).precision_ / np.outer(spread, spread)
        return cls(torch.from_numpy(means).float(), torch.from_numpy(precision).float())

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) squared distance of each row of ``x`` to the nearest class mean."""
        diff = x.float().cpu()[:, None, :] - self.means[None]  # (N, classes, features)
        return torch.einsum("ncf,fg,ncg->nc", diff, self.precision, diff).min(dim=1).values
