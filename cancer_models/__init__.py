"""Explainable benign-vs-malignant image classifiers. Research software, not a medical device.

from cancer_models import load_pretrained, Predictor
predictor = Predictor(load_pretrained("path/or/hub-id"))
predictor.predict("tile.jpg")
"""

from .config import ConfigError, ModelConfig
from .explain import CAM_METHODS
from .hub import CheckpointError, load_pretrained, push_folder_to_hub, push_to_hub, save_pretrained
from .images import ImageError, load_image
from .models import CancerModel, create_model, list_models
from .predict import Explanation, Prediction, Predictor

__version__ = "0.1.0"
__all__ = [
    "CAM_METHODS",
    "CancerModel",
    "CheckpointError",
    "ConfigError",
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
    "push_to_hub",
    "save_pretrained",
]
