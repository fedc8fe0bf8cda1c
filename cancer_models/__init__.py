"""Explainable benign-vs-malignant image classifiers. Research software, not a medical device.

from cancer_models import load_pretrained, Predictor
predictor = Predictor(load_pretrained("path/or/hub-id"))
predictor.predict("tile.jpg")

The names below load on first use, so that importing the package (and the command line's help) needs no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

# name -> the module that defines it
_EXPORTS = {
    "ModelConfig": "cancer_models.config",
    "load_image": "cancer_models.data.images",
    "CheckpointError": "cancer_models.errors",
    "ConfigError": "cancer_models.errors",
    "DataError": "cancer_models.errors",
    "ImageError": "cancer_models.errors",
    "CAM_METHODS": "cancer_models.inference.explain",
    "Explanation": "cancer_models.inference.predict",
    "Prediction": "cancer_models.inference.predict",
    "Predictor": "cancer_models.inference.predict",
    "CancerModel": "cancer_models.models",
    "create_model": "cancer_models.models",
    "list_models": "cancer_models.models",
    "load_pretrained": "cancer_models.inference.pretrained",
    "push_folder_to_hub": "cancer_models.models.hub",
}

__all__ = [  # the names of _EXPORTS, and the version
    "CAM_METHODS",
    "CancerModel",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "Explanation",
    "ImageError",
    "ModelConfig",
    "Prediction",
    "Predictor",
    "__version__",
    "create_model",
    "list_models",
    "load_image",
    "load_pretrained",
    "push_folder_to_hub",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cancer_models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # loaded once
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # what type checkers and IDEs see
    from .config import ModelConfig
    from .data.images import load_image
    from .errors import CheckpointError, ConfigError, DataError, ImageError
    from .inference.explain import CAM_METHODS
    from .inference.predict import Explanation, Prediction, Predictor
    from .inference.pretrained import load_pretrained
    from .models import CancerModel, create_model, list_models
    from .models.hub import push_folder_to_hub
