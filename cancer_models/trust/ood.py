"""Is an image like the ones a model was trained on? The detector that holds every distance check, saved beside
the model as ``ood.safetensors``; each check is fitted and scored in its own module (``distance``, ``domain``,
``floors``, ``limits``), the features and statistics it reads come from ``features``.

The features are the spatial means of the outputs of ``model.ood_layers()`` (mid-level stages: colour and
texture statistics that a photo, a drawing or another modality does not share; an ensemble's come from every
member). The detector holds one mean per class and a shared, shrunk (Ledoit-Wolf) precision matrix fitted on
the training and validation images (``calibration.fitting.fit_rejection``); an image's score is its squared
distance to the nearest class mean (Lee et al., 2018, on pooled features). A second distance, on
``image_statistics`` (colour, saturation, grey-ness, brightness, texture), catches what a network never learnt to tell apart because its training data
never varied there: a grey chest X-ray has no colour at all, unlike any dermoscopy photo.

A third check, the *domain* score, is learnt: a linear classifier on the same features and statistics that
tells the model's own images from images it must refuse (other modalities, package photographs, generated
images; ``calibration.negatives``). A distance measures how far an image lies from the training images in
every direction at once; a photograph of fur can sit as close as a real lesion on average and still differ
along the few directions the classifier finds.

Each distance has its own limit, a quantile of held-out images' scores; an image's *unusualness* is the largest
of its distances as a multiple of its limit, so above 1 means refused. A model of a colour modality also has a
*colour floor*: an image with less colour than its held-out images' least colourful (with a margin) is refused
whatever the distances say, because a Mahalanobis distance over many statistics dilutes the one that matters
for a grey image (an X-ray, a CT, an ultrasound frame) shown to a dermoscopy or histopathology model. Every model
has a *texture floor* the same way: a blank or flat image (a colour, a smooth gradient) has no fine texture, and a
distance over many statistics can miss that too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from ..models.hub import resolve_file
from ..settings import TrustSettings
from .distance import Gaussian
from .domain import Domain, Negatives
from .features import image_statistics
from .limits import unusualness

OOD_WEIGHTS_NAME = "ood.safetensors"


@dataclass
class MahalanobisDetector:
    """One distance per feature layer (Lee et al. score each layer and combine), and one on image statistics.

    A layer that sees texture and one that sees structure disagree about different foreign images; taking the
    largest of their distances, each against its own limit, refuses what either finds unusual.
    """

    parts: list[Gaussian]  # one per layer of model.ood_layers(), in order
    sizes: list[int]  # the feature columns of each part
    # The distance on image_statistics(), with one mean for all classes; None for folders fitted before it
    # existed (their check rests on the features alone).
    image: Gaussian | None = None
    # The learnt domain score; None for folders fitted before it existed.
    domain: Domain | None = None

    @classmethod
    def fit(
        cls,
        features: torch.Tensor,
        targets: np.ndarray,
        statistics: torch.Tensor,
        sizes: list[int],
        negatives: Negatives | None = None,
    ) -> MahalanobisDetector:
        """One class-conditional distance per feature layer (``sizes``: each layer's columns of ``features``), one
        class-free distance on the image ``statistics``, and with ``negatives`` the domain score."""
        domain = Domain.fit(features, statistics, negatives) if negatives is not None else None
        layers = cls.fit_layers(features, targets, sizes)
        return cls(layers.parts, layers.sizes, Gaussian.fit(statistics.double().numpy()), domain)

    @classmethod
    def fit_layers(cls, features: torch.Tensor, targets: np.ndarray, sizes: list[int]) -> MahalanobisDetector:
        """The feature layers' distances alone (``scores`` without statistics gives one column per layer)."""
        return cls([Gaussian.fit(x.double().numpy(), targets) for x in features.split(sizes, dim=1)], list(sizes))

    def scores(self, features: torch.Tensor, statistics: torch.Tensor | None = None) -> torch.Tensor:
        """Every check's score of each image.

        Args:
            features: (N, D) the rejection check's features (``CancerModel.ood_features``).
            statistics: (N, 22) ``features.image_statistics`` of the same images; None: features only.

        Returns:
            (N, layers [+ 1 [+ 1]]): each layer's distance, then, where statistics are given, the image
            statistics' distance and the domain score.
        """
        columns = [part.score(x) for part, x in zip(self.parts, features.split(self.sizes, dim=1), strict=True)]
        if statistics is not None and self.image is not None:
            columns.append(self.image.score(statistics))
            if self.domain is not None:
                columns.append(self.domain.score(features, statistics))
        return torch.stack(columns, dim=1)

    def unusualness(self, features: torch.Tensor, batch: torch.Tensor, ood: TrustSettings) -> torch.Tensor:
        """How unusual each image is for the model.

        Args:
            features: (N, D) the rejection check's features.
            batch: the same images, uint8 (N, 3, S, S), for their statistics.
            ood: the model's ``TrustSettings``.

        Returns:
            (N,) each image's largest score as a multiple of its limit, or its colour or texture ratio where that is
            larger: above 1 is refused.
        """
        statistics = image_statistics(batch) if self.image is not None else None
        return unusualness(self.scores(features, statistics), statistics, ood)

    def save(self, path: str | Path) -> None:
        """Write the detector's statistics as safetensors.

        Args:
            path: the file to write (``ood.safetensors`` beside the model).
        """
        tensors = {"sizes": torch.tensor(self.sizes)}
        for i, part in enumerate(self.parts):
            tensors |= {f"part{i}.means": part.means.contiguous(), f"part{i}.precision": part.precision.contiguous()}
        if self.image is not None:
            tensors |= {f"image.{k}": getattr(self.image, k).contiguous() for k in ("means", "precision")}
        if self.domain is not None:
            tensors |= {f"domain.{k}": getattr(self.domain, k).contiguous() for k in ("weight", "bias")}
        save_file(tensors, str(path))

    @classmethod
    def load(cls, path: str | Path) -> MahalanobisDetector:
        t = load_file(str(path))
        if "means" in t:  # one distance over all layers, as fitted before layers were scored apart
            return cls([Gaussian(t["means"], t["precision"])], [t["means"].shape[1]])
        sizes = t["sizes"].tolist()
        parts = [Gaussian(t[f"part{i}.means"], t[f"part{i}.precision"]) for i in range(len(sizes))]
        image = Gaussian(t["image.means"], t["image.precision"]) if "image.means" in t else None
        domain = Domain(t["domain.weight"], t["domain.bias"]) if "domain.weight" in t else None
        return cls(parts, sizes, image, domain)


def load_detector(model_id: str | Path, **hub: Any) -> MahalanobisDetector:
    """The rejection detector saved beside a model (``ood.safetensors``).

    Args:
        model_id: a local model folder or a Hub repo id.
        **hub: ``hf_hub_download``'s options (revision, cache_dir, token, local_files_only).

    Returns:
        The detector.

    Raises:
        CheckpointError: the file is missing or unreadable.
    """
    path = resolve_file(str(model_id), OOD_WEIGHTS_NAME, **hub)
    try:
        return MahalanobisDetector.load(path)
    except (SafetensorError, OSError, KeyError) as e:
        raise CheckpointError(f"{path} is not a readable out-of-distribution file: {e}") from e
