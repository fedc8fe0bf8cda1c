"""Explainable benign-vs-malignant image classifiers. Research software, not a medical device.

from cancer_models import load_pretrained, Predictor
predictor = Predictor(load_pretrained("path/or/hub-id"))
predictor.predict("tile.jpg")
"""

from .config import ModelConfig
from .errors import CheckpointError, ConfigError, DataError, ImageError
from .explain import CAM_METHODS
from .hub import push_folder_to_hub
from .images import load_image
from .models import CancerModel, create_model, list_models, load_pretrained
from .predict import Explanation, Prediction, Predictor

__version__ = "0.1.0"
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
    "create_model",
    "list_models",
    "load_image",
    "load_pretrained",
    "push_folder_to_hub",
]
