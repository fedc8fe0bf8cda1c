"""Model registry. Importing this package registers every architecture."""

from . import cancer_cnn, torchvision_backbones  # noqa: F401  (registration side effects)
from ._registry import build_from_config, create_model, list_models, register_model
from .base import CancerModel
from .cancer_cnn import CancerCNN
from .torchvision_backbones import TransferClassifier

__all__ = [
    "CancerCNN",
    "CancerModel",
    "TransferClassifier",
    "build_from_config",
    "create_model",
    "list_models",
    "register_model",
]
