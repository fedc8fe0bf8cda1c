"""The settings a model folder carries in its config besides its architecture: when an image is refused, its
prediction sets, and the physical scale of its tiles.

``TrustSettings`` are the limits of every check of "is this image like my training images?" (``trust/``
scores them, ``calibration/`` fits them); ``ConformalSettings`` size the prediction sets. Both are stored in
``config.json`` under ``ood`` and ``conformal``. Folders written before these settings had names (the keys
``threshold``, ``thresholds``, ``image_threshold``, ``domain_threshold``, ``thresholds_before_refusal``) are
converted when they are read, here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .errors import ConfigError

DETECTOR_METHODS = ("mahalanobis",)
# Over what the acceptance share was counted: held-out groups (near-copies count once) or single images.
ACCEPTANCE_UNITS = ("groups", "images")
# Which features an ensemble's detector reads: the model's own, or the mean of its members'.
FEATURE_SOURCES = ("model", "member mean")
# Keys of the layout before the settings were typed -> their names now.
_RENAMED = {
    "thresholds": "layer_limits",
    "image_threshold": "image_limit",
    "domain_threshold": "domain_limit",
    "thresholds_before_refusal": "layer_limits_before_refusal",
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fail(field: str, problem: str) -> None:
    raise ConfigError(f"config field '{field}' {problem}")


@dataclasses.dataclass
class TrustSettings:
    """Limits of the checks that refuse an image unlike the model's training images.

    An image is refused when any distance exceeds its limit (``trust.ood.unusualness`` divides each by its limit:
    above 1 is refused) or its colour or fine texture falls below its floor.

    Args:
        layer_limits: the limit on the Mahalanobis distance of each tapped layer's features.
        image_limit: the limit on the distance of 22 colour, brightness and texture statistics; None: unchecked.
        domain_limit: the limit on the domain score (a linear classifier of own images against other kinds);
            None: unchecked.
        colour_floor: the least colourfulness an image may have (0: no floor; grey modalities).
        texture_floor: the least fine texture an image may have (0: no floor).
        acceptance: the share of held-out groups (or images) whose every score the limits accept.
        quantile: the quantile of held-out scores that ``acceptance`` came to per check, where recorded.
        over: "groups" (held-out groups, near-copies counting once) or "images".
        layers_over_collections: the collections (labs, clinics) whose images set the layer limits, each scored
            by a detector fitted without it; empty: the layer limits were set like the others.
        features: "model" (the model's own features) or "member mean" (an ensemble's members averaged).
        domain_negatives: how many negatives of each kind taught the domain score.
        refused: image sets the limits were tightened until they were refused (names for the card).
        layer_limits_before_refusal: the layer limits before that tightening.
        method: the distance, "mahalanobis".
    """

    layer_limits: list[float]
    image_limit: float | None = None
    domain_limit: float | None = None
    colour_floor: float = 0.0
    texture_floor: float = 0.0
    acceptance: float = 0.99
    quantile: float | None = None
    over: str = "images"
    layers_over_collections: list[str] = dataclasses.field(default_factory=list)
    features: str = "model"
    domain_negatives: dict[str, int] = dataclasses.field(default_factory=dict)
    refused: list[str] = dataclasses.field(default_factory=list)
    layer_limits_before_refusal: list[float] | None = None
    method: str = "mahalanobis"

    def __post_init__(self) -> None:
        self.validate()

    def limits(self) -> list[float]:
        """The limits in the order of ``MahalanobisDetector.scores``: one per layer, then the image statistics'
        and the domain score's where they are checked."""
        return [*self.layer_limits, *(v for v in (self.image_limit, self.domain_limit) if v is not None)]

    def validate(self) -> None:
        """Check every field's type and range (a ``ConfigError`` names the bad field)."""
        if self.method not in DETECTOR_METHODS:
            _fail("ood.method", f"must be one of {list(DETECTOR_METHODS)}, got {self.method!r}")
        for name in ("layer_limits", "layer_limits_before_refusal"):
            values = getattr(self, name)
            if values is None and name != "layer_limits":
                continue
            if not (isinstance(values, list) and values and all(_is_number(v) and v > 0 for v in values)):
                _fail(f"ood.{name}", f"must be a list of positive numbers, got {values!r}")
        for name in ("image_limit", "domain_limit", "quantile"):
            value = getattr(self, name)
            if value is not None and not _is_number(value):
                _fail(f"ood.{name}", f"must be null or a number, got {value!r}")
        for name in ("colour_floor", "texture_floor"):
            if not (_is_number(getattr(self, name)) and getattr(self, name) >= 0):
                _fail(f"ood.{name}", f"must be a number >= 0, got {getattr(self, name)!r}")
        if not (_is_number(self.acceptance) and 0 < self.acceptance <= 1):
            _fail("ood.acceptance", f"must be a share in (0, 1], got {self.acceptance!r}")
        if self.over not in ACCEPTANCE_UNITS:
            _fail("ood.over", f"must be one of {list(ACCEPTANCE_UNITS)}, got {self.over!r}")
        if self.features not in FEATURE_SOURCES:
            _fail("ood.features", f"must be one of {list(FEATURE_SOURCES)}, got {self.features!r}")
        if not (isinstance(self.domain_negatives, dict) and all(_is_count(v) for v in self.domain_negatives.values())):
            _fail("ood.domain_negatives", f"must map kinds to counts, got {self.domain_negatives!r}")
        for name in ("refused", "layers_over_collections"):
            names = getattr(self, name)
            if not (isinstance(names, list) and all(isinstance(v, str) for v in names)):
                _fail(f"ood.{name}", f"must be a list of names, got {names!r}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as config.json stores them."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> TrustSettings:
        """Settings from their JSON object, in today's layout or an older one (converted here).

        Args:
            data: the ``ood`` object of a config.json.

        Returns:
            The validated settings.

        Raises:
            ConfigError: not an object, an unknown key, or a field of the wrong type or range.
        """
        if isinstance(data, TrustSettings):
            return data
        if not isinstance(data, dict):
            _fail("ood", f"must be null or an object, got {data!r}")
        data = dict(data)
        if "threshold" in data and "thresholds" not in data:  # the first layout: one limit on one layer
            data["thresholds"] = [data.pop("threshold")]
        data = {_RENAMED.get(key, key): value for key, value in data.items()}
        return cls(**_fields(cls, data, "ood", {"layer_limits"}, "the layer limits"))


@dataclasses.dataclass
class ConformalSettings:
    """Split-conformal prediction sets: a class is in an image's set when its probability is at least
    ``1 - qhat`` (``trust.conformal``); over exchangeable images the set holds the true class with probability
    at least ``1 - alpha``.

    Args:
        alpha: the miscoverage level the sets were calibrated for.
        qhat: the calibrated quantile of the non-conformity scores, without test-time views.
        qhat_tta: the same with the model's test-time views averaged; None: calibrated without them.
        collections: the collections (clinics, labs) of the calibration images on each of which the sets were
            calibrated to hold (``trust.conformal.conformal_quantile``); empty: calibrated on their mix only.
    """

    alpha: float
    qhat: float
    qhat_tta: float | None = None
    collections: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if not (_is_number(self.alpha) and 0 < self.alpha < 1):
            _fail("conformal.alpha", f"must be a number in (0, 1), got {self.alpha!r}")
        if not (isinstance(self.collections, list) and all(isinstance(c, str) for c in self.collections)):
            _fail("conformal.collections", f"must be a list of names, got {self.collections!r}")
        for name in ("qhat", "qhat_tta"):
            value = getattr(self, name)
            if not (_is_number(value) or (value is None and name == "qhat_tta")):
                _fail(f"conformal.{name}", f"must be a number, got {value!r}")

    @property
    def level(self) -> float:
        """The coverage the sets were calibrated for, ``1 - alpha``."""
        return 1 - self.alpha

    def quantile(self, tta: bool) -> float:
        """The quantile for predictions made with or without test-time views.

        Args:
            tta: whether the probabilities averaged the model's test-time views.

        Returns:
            ``qhat_tta`` with views where calibrated, else ``qhat``.
        """
        return self.qhat_tta if tta and self.qhat_tta is not None else self.qhat

    def to_dict(self) -> dict[str, Any]:
        """The settings as config.json stores them."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ConformalSettings:
        """Settings from the ``conformal`` object of a config.json (a ``ConfigError`` names what is wrong)."""
        if isinstance(data, ConformalSettings):
            return data
        return cls(**_fields(cls, data, "conformal", {"alpha", "qhat"}, "alpha and qhat (and qhat_tta)"))


def _fields(cls: type, data: Any, field: str, required: set[str], needs: str) -> dict[str, Any]:
    """``data`` checked as the keyword arguments of the settings class ``cls`` stored under ``field``: an object
    with the ``required`` keys (``needs`` in words) and no key ``cls`` lacks."""
    if not isinstance(data, dict):
        _fail(field, f"must be null or an object with {needs}, got {data!r}")
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        _fail(field, f"has unknown keys {unknown}")
    if not required <= set(data):
        _fail(field, f"must be an object with {needs}, got {data!r}")
    return data


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclasses.dataclass(frozen=True)
class TileSpec:
    """The scale of a tile: its side in pixels, at a number of microns per pixel where that is known.

    One spec serves training (a source whose images are larger than a tile is cut into tiles of this scale),
    calibration and slides (a slide that states its microns per pixel is cut to match).

    Args:
        size: the tile's side in pixels at ``mpp``.
        mpp: microns per pixel; None: unknown, and ``size`` is taken in any image's own pixels.
    """

    size: int
    mpp: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.size, int) and not isinstance(self.size, bool) and self.size >= 8):
            _fail("tile.size", f"must be an integer >= 8, got {self.size!r}")
        if self.mpp is not None and not (_is_number(self.mpp) and self.mpp > 0):
            _fail("tile.mpp", f"must be null or a positive number, got {self.mpp!r}")

    @property
    def microns(self) -> float | None:
        """The tile's side in microns, where its scale is known."""
        return self.size * self.mpp if self.mpp else None

    def pixels_at(self, mpp: float | None) -> int:
        """The tile's side in another image's pixels.

        Args:
            mpp: that image's microns per pixel; None: unknown.

        Returns:
            ``size x self.mpp / mpp``, at least 8; ``size`` where either scale is unknown.
        """
        if self.mpp and mpp:
            return max(8, round(self.size * self.mpp / mpp))
        return self.size

    @classmethod
    def from_dict(cls, data: Any) -> TileSpec:
        """A spec from the ``tile`` object of a config.json (a ``ConfigError`` names what is wrong)."""
        if isinstance(data, TileSpec):
            return data
        return cls(**_fields(cls, data, "tile", {"size"}, "size (and mpp)"))
