"""The model config: everything needed to use a checkpoint with no other knowledge.

It is stored as ``config.json`` beside ``model.safetensors`` and validated on every load, so a
hand-edited or foreign file fails with a message that names the bad field.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .record import TrainingRecord
from .settings import ConformalSettings, TileSpec, TrustSettings

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_LABELS = ("benign", "malignant")
TTA_VIEWS = ("dihedral", "hflip", "vflip")
# What is done to an image before it is resized for the model (data/images.prepare_image).
PREPROCESSING = ("none", "mammogram")
# Per-image colour normalisation before mean/std (models.preprocessing.model_input), with how recipes and cards describe it.
COLOUR_CONSTANCY = {
    "none": "",
    "shades_of_gray": "Shades of Gray colour constancy (p = 6)",
    "optical_density": "stain density normalisation (each channel's mean optical density over tissue scaled to a reference)",
}
# 2: trust settings under their own names (settings.py); folders of version 1 are converted when read.
FORMAT_VERSION = 2
# CAM method name -> pytorch-grad-cam class name.
CAM_METHODS = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "hirescam": "HiResCAM",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "scorecam": "ScoreCAM",
}


@dataclasses.dataclass
class ModelConfig:
    architecture: str
    model_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    labels: tuple[str, str] = DEFAULT_LABELS
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # Applied to every input (training, evaluation, the app, Grad-CAM) before mean/std.
    colour_constancy: str = "none"
    # Applied to every decoded image before it is resized (training, evaluation, the app, Grad-CAM):
    # "mammogram" puts a mammogram in canonical form (data/mammography.py).
    preprocessing: str = "none"
    # Decision threshold on the calibrated malignant probability.
    threshold: float = 0.5
    # Logits are divided by this before the softmax (temperature scaling).
    temperature: float = 1.0
    # Test-time augmentation views that keep an image what it is: all 8 flips and rotations, or (for images
    # with an up, such as ultrasound) horizontal flips only, or (a canonical mammogram, whose chest wall is on
    # the left) vertical flips only.
    tta_views: str = "dihedral"
    # Explanations: the CAM method and target layers (module names, e.g. "stage3") shown by default, chosen by
    # how often the map points into the lesion (localization.py). No layers: the architecture's own default.
    cam_method: str = "gradcam"
    cam_layers: list[str] = dataclasses.field(default_factory=list)
    # When an image is refused as unlike the training images (settings.py; the detector's statistics are in
    # ood.safetensors). None: every image is accepted.
    ood: TrustSettings | None = None
    # Split-conformal prediction sets (settings.py). None: no sets.
    conformal: ConformalSettings | None = None
    # The scale of the training tiles, for tiling large images and slides (settings.TileSpec); None: an image
    # is the model's unit, and a large one is cut into tiles of the input size.
    tile: TileSpec | None = None
    # How the model was trained, what it scored and what fitted its trust (record.py).
    training: TrainingRecord = dataclasses.field(default_factory=TrainingRecord)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self.labels = tuple(self.labels)
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        self.validate()

    @property
    def malignant_label(self) -> str:
        return self.labels[1]

    def validate(self) -> None:
        """Check every field's type and range; whether ``architecture`` exists is checked where models are built."""

        def fail(field: str, problem: str) -> None:
            raise ConfigError(f"config field '{field}' {problem}")

        if not isinstance(self.architecture, str) or not self.architecture:
            fail("architecture", f"must be a model name, got {self.architecture!r}")
        if not isinstance(self.model_args, dict):
            fail("model_args", "must be an object")
        if len(self.labels) != 2 or not all(isinstance(x, str) and x for x in self.labels):
            fail("labels", f"must be two non-empty names (benign first), got {list(self.labels)}")
        if len(set(self.labels)) != 2:
            fail("labels", f"must be two different names, got {list(self.labels)}")
        if not isinstance(self.input_size, int) or isinstance(self.input_size, bool) or self.input_size < 32:
            fail("input_size", f"must be an integer >= 32, got {self.input_size!r}")
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) != 3 or not all(math.isfinite(v) for v in values):
                fail(name, f"must be three finite numbers, got {list(values)}")
        if not all(v > 0 for v in self.std):
            fail("std", f"must be positive, got {list(self.std)}")
        if self.colour_constancy not in COLOUR_CONSTANCY:
            fail("colour_constancy", f"must be one of {list(COLOUR_CONSTANCY)}, got {self.colour_constancy!r}")
        if not (isinstance(self.threshold, (int, float)) and 0.0 < self.threshold < 1.0):
            fail("threshold", f"must be a probability strictly between 0 and 1, got {self.threshold!r}")
        if not (
            isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature) and self.temperature > 0
        ):
            fail("temperature", f"must be a positive number, got {self.temperature!r}")
        if self.preprocessing not in PREPROCESSING:
            fail("preprocessing", f"must be one of {list(PREPROCESSING)}, got {self.preprocessing!r}")
        if self.tta_views not in TTA_VIEWS:
            fail("tta_views", f"must be one of {list(TTA_VIEWS)}, got {self.tta_views!r}")
        if self.cam_method not in CAM_METHODS:
            fail("cam_method", f"must be one of {list(CAM_METHODS)}, got {self.cam_method!r}")
        if not isinstance(self.cam_layers, list) or not all(isinstance(n, str) and n for n in self.cam_layers):
            fail("cam_layers", f"must be a list of module names, got {self.cam_layers!r}")
        self._validate_scale_and_limits(fail)
        self.training = TrainingRecord.from_dict(self.training)  # a record set as a plain object is checked too
        if self.format_version > FORMAT_VERSION:
            fail(
                "format_version",
                f"is {self.format_version}, newer than this library reads ({FORMAT_VERSION}); upgrade cancer_models",
            )
        self.format_version = FORMAT_VERSION  # older layouts were converted above; saved, they are today's

    def _validate_scale_and_limits(self, fail) -> None:
        # Plain objects (a JSON file, a hand-made config) become typed settings, older layouts converted.
        if self.ood is not None:
            self.ood = TrustSettings.from_dict(self.ood)
            self.ood.validate()
        if self.conformal is not None:
            self.conformal = ConformalSettings.from_dict(self.conformal)
        if self.tile is not None:
            self.tile = TileSpec.from_dict(self.tile)

    def to_dict(self) -> dict[str, Any]:
        """The config as config.json stores it (the record's later analyses live in evaluations.json)."""
        d = dataclasses.asdict(self)
        d["training"] = self.training.to_dict()  # without the evaluations, which are stored beside the config
        for key in ("labels", "mean", "std"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, data: Any) -> ModelConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        if "architecture" not in data:
            raise ConfigError("config has no 'architecture' field: not a cancer_models checkpoint")
        data = _tile_fields_as_spec(data)
        unknown = sorted(set(data) - names)
        if unknown:
            warnings.warn(f"ignoring unknown config fields: {', '.join(unknown)}", stacklevel=2)
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except (TypeError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"malformed config: {e}") from e

    def save(self, path: str | Path) -> None:
        """Write the config as JSON, keys sorted.

        Args:
            path: the file to write (``config.json`` in a model folder).
        """
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path} is not valid JSON: {e}") from e
        return cls.from_dict(data)


def _tile_fields_as_spec(data: dict[str, Any]) -> dict[str, Any]:
    """Folders written before the tile scale was one object kept it as ``tile_size`` and ``tile_mpp``."""
    if "tile_size" not in data and "tile_mpp" not in data:
        return data
    data = dict(data)
    size, mpp = data.pop("tile_size", None), data.pop("tile_mpp", None)
    if size is not None:
        data.setdefault("tile", {"size": size, "mpp": mpp})
    return data


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
