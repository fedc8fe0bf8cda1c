"""Checks of a training config that can run before any image is decoded: names the library knows, options that
go together, a checkpoint to resume from."""

from __future__ import annotations

from pathlib import Path

from ..data.augment import AUGMENTATIONS
from ..data.spec import parse_source_mpp
from ..errors import ConfigError, DataError
from ..evaluation.metrics import choose_threshold
from ..models import list_models
from ..sources import display_name
from .config import CHECKPOINT_DIR, STATE_FILE, TrainConfig


def check_config(cfg: TrainConfig) -> None:
    """Everything that can be checked before data is decoded or a model built."""
    if not cfg.data:
        raise ConfigError("no data given: pass one or more image folders or Hub dataset ids")
    if cfg.model not in list_models():
        raise ConfigError(f"unknown model {cfg.model!r}; choose from {', '.join(list_models())}")
    if cfg.augment not in AUGMENTATIONS:
        raise ConfigError(f"unknown augmentation {cfg.augment!r}; choose from {', '.join(AUGMENTATIONS)}")
    if cfg.masks and len(cfg.masks) != len(cfg.data):
        raise ConfigError(f"--masks: {len(cfg.masks)} folder(s) for {len(cfg.data)} --data source(s); give one each")
    if cfg.mask_loss and not cfg.masks:
        raise ConfigError("--mask-loss needs --masks")
    try:
        choose_threshold([0, 1], [0.2, 0.8], cfg.threshold_rule)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if cfg.tile_mpp and not cfg.tile_size:
        raise ConfigError("--tile-mpp gives the scale of --tile-size: give both")
    if cfg.source_mpp and not (cfg.tile_size and cfg.tile_mpp):
        raise ConfigError("--source-mpp cuts images to the model's tile: give --tile-size and --tile-mpp too")
    try:
        named = parse_source_mpp(cfg.source_mpp or [])
    except DataError as e:
        raise ConfigError(str(e)) from None
    unknown = sorted(set(named) - {display_name(d) for d in cfg.data})
    if unknown:
        raise ConfigError(
            f"--source-mpp names {unknown}, not among the --data sources {[display_name(d) for d in cfg.data]}"
        )
    if cfg.streaming and (cfg.folds or cfg.masks or cfg.leave_out or cfg.balance_collections or cfg.source_mpp):
        raise ConfigError(
            "--streaming works with none of --folds, --masks, --leave-out, --balance-collections and --source-mpp "
            "(they need the whole training split)"
        )
    if cfg.folds == 1 or cfg.folds < 0:
        raise ConfigError(f"--folds must be 0 (no cross-validation) or at least 2, got {cfg.folds}")
    if cfg.fold and not 1 <= cfg.fold <= cfg.folds:
        raise ConfigError(f"--fold {cfg.fold} needs --folds K with 1 <= {cfg.fold} <= K")
    fold_checkpoints = Path(cfg.output_dir).glob(f"fold*/{CHECKPOINT_DIR}/{STATE_FILE}")
    if cfg.resume and not (cfg.checkpoint_dir / STATE_FILE).is_file() and not any(fold_checkpoints):
        raise ConfigError(f"--resume: no checkpoint in {cfg.checkpoint_dir} (or in its fold folders)")
