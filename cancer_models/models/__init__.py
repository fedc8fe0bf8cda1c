"""Model registry. Importing this package registers every architecture."""

from ._registry import build_from_config, create_model, default_config, list_models, register_model
from .base import CancerModel
from .cancer_cnn import CancerCNN
from .ensemble import Ensemble
from .torchvision_backbones import BACKBONES, TransferClassifier

__all__ = [
    "BACKBONES",
    "CancerCNN",
    "CancerModel",
    "Ensemble",
    "TransferClassifier",
    "build_from_config",
    "create_model",
    "default_config",
    "list_models",
    "register_model",
]
