"""The domain score: a linear classifier that tells a model's own images from images it must refuse.

A distance measures how far an image lies from the training images in every direction at once; a photograph of
fur can sit as close as a real lesion on average and still differ along the few directions this classifier
finds. It is taught on the model's images against other modalities and the generated scenes of
``calibration.negatives``, and read like a distance: softplus of the log-odds of "not the model's kind".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .distance import STATISTICS_FLOOR

# Inverse regularisation (on standardised columns): strong, so that it learns the broad directions in which
# foreign images differ rather than the particular negatives it was shown.
DOMAIN_C = 0.1


@dataclass
class Negatives:
    """Images the model must refuse, as the domain classifier sees them, and how many of each kind."""

    features: torch.Tensor  # (N, D)
    statistics: torch.Tensor  # (N, S)
    counts: dict[str, int]


@dataclass
class Domain:
    """A linear classifier over [features, image statistics] (standardisation folded in): its score is
    softplus of the log-odds that an image is not of the model's kind, positive, so that it can be read against
    a limit like a distance."""

    weight: torch.Tensor  # (features + statistics,)
    bias: torch.Tensor  # ()

    @classmethod
    def fit(cls, features: torch.Tensor, statistics: torch.Tensor, negatives: Negatives) -> Domain:
        """A logistic regression of "not the model's kind" on standardised [features, statistics], the model's
        images against ``negatives`` (classes weighted equally), with the standardisation folded into its
        weights."""
        from sklearn.linear_model import LogisticRegression  # fitting only: predicting needs no scikit-learn

        own = torch.cat([features, statistics], dim=1).double().numpy()
        other = torch.cat([negatives.features, negatives.statistics], dim=1).double().numpy()
        x = np.concatenate([own, other])
        mean, spread = x.mean(axis=0), np.maximum(x.std(axis=0), STATISTICS_FLOOR)
        classifier = LogisticRegression(C=DOMAIN_C, class_weight="balanced", max_iter=5000)
        classifier.fit((x - mean) / spread, np.r_[np.zeros(len(own)), np.ones(len(other))])
        weight = classifier.coef_[0] / spread
        bias = classifier.intercept_[0] - float(weight @ mean)
        return cls(torch.from_numpy(weight).float(), torch.tensor(bias, dtype=torch.float32))

    def score(self, features: torch.Tensor, statistics: torch.Tensor) -> torch.Tensor:
        """(N,) the score of each image: positive, larger for images less like the model's own."""
        x = torch.cat([features.float().cpu(), statistics.float().cpu()], dim=1)
        return torch.nn.functional.softplus(x @ self.weight + self.bias)
