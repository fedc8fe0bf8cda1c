"""Is an image like the ones a model was trained on? Mahalanobis distances of mid-level features and of
simple image statistics.

The features are the spatial means of the outputs of ``model.ood_layers()`` (mid-level stages: colour and
texture statistics that a photo, a drawing or another modality does not share; an ensemble's come from every
member). The detector holds one mean per class and a shared, shrunk (Ledoit-Wolf) precision matrix fitted on
the training and validation images (``calibration.fitting.fit_rejection``); an image's score is its squared distance to the nearest class
mean (Lee et al., 2018, on pooled features). A second distance, on ``image_statistics`` (colour, saturation,
grey-ness, brightness, texture), catches what a network never learnt to tell apart because its training data
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

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..settings import TrustSettings

OOD_WEIGHTS_NAME = "ood.safetensors"
CHROMA = slice(9, 12)  # the columns of image_statistics() that hold |R-G|, |G-B| and |R-B|
TEXTURE = 20  # the column of image_statistics() that holds the Laplacian energy (fine texture, sharpness)
# Below a floor an image's ratio grows as floor / value; capped so that a grey or flat image reads as
# "far beyond the limit" rather than as an arbitrary huge number.
MAX_FLOOR_RATIO = 100.0


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


@dataclass
class Gaussian:
    """Class means and a shared precision matrix: the squared Mahalanobis distance to the nearest mean."""

    means: torch.Tensor  # (classes, features)
    precision: torch.Tensor  # (features, features)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        diff = x.float().cpu()[:, None, :] - self.means[None]  # (N, classes, features)
        return torch.einsum("ncf,fg,ncg->nc", diff, self.precision, diff).min(dim=1).values


@dataclass
class Domain:
    """A linear classifier over [features, image statistics] (standardisation folded in): its score is
    softplus of the log-odds that an image is not of the model's kind, positive, so that it can be read against
    a limit like a distance."""

    weight: torch.Tensor  # (features + statistics,)
    bias: torch.Tensor  # ()

    def score(self, features: torch.Tensor, statistics: torch.Tensor) -> torch.Tensor:
        x = torch.cat([features.float().cpu(), statistics.float().cpu()], dim=1)
        return torch.nn.functional.softplus(x @ self.weight + self.bias)


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

    def scores(self, features: torch.Tensor, statistics: torch.Tensor | None = None) -> torch.Tensor:
        """(N, parts [+ 1 [+ 1]]): each layer's distance, then, where statistics are given, the image
        statistics' distance and the domain score."""
        columns = [part.score(x) for part, x in zip(self.parts, features.split(self.sizes, dim=1), strict=True)]
        if statistics is not None and self.image is not None:
            columns.append(self.image.score(statistics))
            if self.domain is not None:
                columns.append(self.domain.score(features, statistics))
        return torch.stack(columns, dim=1)

    def unusualness(self, features: torch.Tensor, batch: torch.Tensor, ood: TrustSettings) -> torch.Tensor:
        """Each image's largest distance as a multiple of its limit (``config.ood``), or its colour ratio where
        that is larger: above 1 is refused."""
        statistics = image_statistics(batch) if self.image is not None else None
        return unusualness(self.scores(features, statistics), statistics, ood)

    def save(self, path: str | Path) -> None:
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


def colourfulness(statistics: torch.Tensor) -> torch.Tensor:
    """(N,) mean absolute difference between colour channels (0-1 scale) from ``image_statistics``: 0 for grey."""
    return statistics[:, CHROMA].mean(dim=1)


def texture(statistics: torch.Tensor) -> torch.Tensor:
    """(N,) mean absolute Laplacian of the brightness (0-1 scale) from ``image_statistics``: 0 for a flat image."""
    return statistics[:, TEXTURE]


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


def unusualness(scores: torch.Tensor, statistics: torch.Tensor | None, ood: TrustSettings) -> torch.Tensor:
    """(N,) the largest of ``scores`` (``MahalanobisDetector.scores``) as multiples of their limits
    (``TrustSettings.limits``), or the colour or texture ratio where that is larger."""
    ratios = (scores / torch.tensor(ood.limits())).max(dim=1).values
    if statistics is None:
        return ratios
    floors = torch.maximum(colour_ratio(statistics, ood), texture_ratio(statistics, ood))
    return torch.maximum(ratios, floors.to(ratios.dtype))
