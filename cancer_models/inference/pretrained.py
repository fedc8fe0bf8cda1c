"""Loading a model folder for answering: the weights and config (``models``) with the rejection detector
(``trust``) that refuses images unlike the training data."""

from __future__ import annotations

from pathlib import Path

import torch

from ..models import CancerModel
from ..trust.ood import load_detector


def load_pretrained(
    name_or_path: str | Path,
    *,
    revision: str | None = None,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> CancerModel:
    """Load any cancer_models checkpoint from a local folder or a Hub repo id, in eval mode.

    A repo id goes through the Hugging Face cache, so it also works offline (``HF_HUB_OFFLINE=1``)
    once downloaded; ``local_files_only=True`` never touches the network.

    Args:
        name_or_path: a model folder (config.json, model.safetensors) or a Hub repo id.
        revision: the Hub revision (branch, tag or commit).
        device: where to put the weights.
        cache_dir: the Hugging Face cache to use.
        token: a Hub token for private repos.
        local_files_only: never download.

    Returns:
        The model, in eval mode, with its rejection detector (``model.ood_detector``) where the folder has one.

    Raises:
        CheckpointError: a missing, unreadable or mismatched weights file (weights load only from safetensors).
        ConfigError: a missing or invalid config.

    Example:
        >>> from cancer_models import Predictor, load_pretrained
        >>> predictor = Predictor(load_pretrained("models/histopathology-cancer-cnn"))
    """
    hub = {"revision": revision, "cache_dir": cache_dir, "token": token, "local_files_only": local_files_only}
    model = CancerModel.from_pretrained(name_or_path, map_location=device, **hub)
    if model.config.ood is not None:
        model.ood_detector = load_detector(name_or_path, **hub)
    return model
