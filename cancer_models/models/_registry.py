"""Named model registry: each architecture name maps to a model class and its default config."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..config import ModelConfig
from ..errors import ConfigError

if TYPE_CHECKING:
    from .base import CancerModel

_classes: dict[str, type[CancerModel]] = {}
_default_cfgs: dict[str, dict[str, Any]] = {}


def register_model(name: str, **default_cfg: Any) -> Callable[[type[CancerModel]], type[CancerModel]]:
    """Class decorator that registers a model family under an architecture name.

    Args:
        name: the architecture name (``create_model``, ``--model``, ``config.architecture``).
        default_cfg: config fields every new model of this family starts with (e.g. ``input_size``).

    Returns:
        The decorator; it returns the class unchanged. Models of ``name`` are then ``cls(config)``.

    Raises:
        ValueError: ``name`` registered twice.
    """

    def wrap(cls: type[CancerModel]) -> type[CancerModel]:
        if name in _classes:
            raise ValueError(f"model {name!r} is registered twice")
        _classes[name] = cls
        _default_cfgs[name] = default_cfg
        return cls

    return wrap


def list_models() -> list[str]:
    """Architectures that can be created and trained (not composites such as ensembles, built from trained models)."""
    return sorted(name for name, cls in _classes.items() if not cls.is_composite)


def _model_class(name: str) -> type[CancerModel]:
    if name not in _classes:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(_classes))}")
    return _classes[name]


def default_config(
    name: str, *, input_size: int | None = None, labels: tuple[str, str] | None = None, **model_args: Any
) -> ModelConfig:
    """A fresh config for architecture ``name``; ``model_args`` go to the architecture."""
    _model_class(name)
    cfg = dict(_default_cfgs[name])
    if input_size is not None:
        cfg["input_size"] = input_size
    if labels is not None:
        cfg["labels"] = labels
    return ModelConfig(architecture=name, model_args=model_args, **cfg)


def build_from_config(config: ModelConfig) -> CancerModel:
    """The (randomly initialised) model that ``config`` describes."""
    model = _model_class(config.architecture)(config)
    model.cam_target_layers()  # a config naming layers the model lacks fails here, not at the first explanation
    return model


def create_model(
    name: str, *, input_size: int | None = None, labels: tuple[str, str] | None = None, **model_args: Any
) -> CancerModel:
    """Build a registered model with a fresh, untrained config.

    Args:
        name: a registered architecture (``list_models``).
        input_size: the input side in pixels; None: the family's default.
        labels: the two class names, benign first; None: benign, malignant.
        model_args: the family's own arguments (e.g. ``pretrained_backbone=True``).

    Returns:
        The model, randomly initialised (or from ImageNet weights where asked).
    """
    return build_from_config(default_config(name, input_size=input_size, labels=labels, **model_args))
