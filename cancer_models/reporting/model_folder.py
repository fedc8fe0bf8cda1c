"""Writing a model folder whole: the weights and config (``models``), the rejection detector's statistics
(``trust``) and the card that describes them, so that no step leaves a folder whose card or detector is stale."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..models import CancerModel
from ..models.hub import MODEL_CARD_NAME
from ..trust.ood import OOD_WEIGHTS_NAME
from .model_card import build_model_card


def save_model_folder(model: CancerModel, folder: str | Path) -> Path:
    """Write ``config.json``, ``model.safetensors``, ``evaluations.json``, ``ood.safetensors`` (where the config
    has a rejection check) and the ``README.md`` card.

    Args:
        model: the model, with ``model.ood_detector`` set exactly when ``model.config.ood`` is.
        folder: the model folder (created if missing).

    Returns:
        The folder.

    Raises:
        ConfigError: an invalid config, or a rejection check without its detector (or the reverse).
    """
    folder = Path(folder)
    if (model.config.ood is None) != (model.ood_detector is None):
        raise ConfigError("config.ood and the model's ood_detector must be set together")
    model.save_pretrained(folder)
    detector_file = folder / OOD_WEIGHTS_NAME
    if model.ood_detector is None:
        detector_file.unlink(missing_ok=True)  # a stale detector would describe another model
    else:
        model.ood_detector.save(detector_file)
    build_model_card(model.config, model.card_metadata()).save(folder / MODEL_CARD_NAME)
    return folder
