"""Explainable benign-vs-malignant image classifiers. Research software, not a medical device.

from cancer_models import load_pretrained, Predictor
predictor = Predictor(load_pretrained("path/or/hub-id"))
predictor.predict("tile.jpg")
"""

from .config import ModelConfig
from .data.images import load_image
from .errors import CheckpointError, ConfigError, DataError, ImageError
from .inference.explain import CAM_METHODS
from .inference.predict import Explanation, Prediction, Predictor
from .models import CancerModel, create_model, list_models, load_pretrained
from .models.hub import push_folder_to_hub
from .version import __version__

__all__ = [
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
