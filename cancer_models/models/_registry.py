"""Named model registry: each entry is a builder plus its default config (input size, mean/std)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config import ModelConfig
from .base import CancerModel

Builder = Callable[..., CancerModel]

_builders: dict[str, Builder] = {}
_default_cfgs: dict[str, dict[str, Any]] = {}


def register_model(name: str, **default_cfg: Any) -> Callable[[Builder], Builder]:
    """Decorator: register ``fn(**model_args) -> CancerModel`` under ``name``."""

    def wrap(fn: Builder) -> Builder:
        if name in _builders:
            raise ValueError(f"model {name!r} is registered twice")
        _builders[name] = fn
        _default_cfgs[name] = default_cfg
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(_builders)


def create_model(
    name: str,
    *,
    input_size: int | None = None,
    labels: tuple[str, str] | None = None,
    **model_args: Any,
) -> CancerModel:
    """Build a registered model with a fresh config; ``model_args`` go to the architecture."""
    if name not in _builders:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    cfg: dict[str, Any] = dict(_default_cfgs[name])
    if input_size is not None:
        cfg["input_size"] = input_size
    if labels is not None:
        cfg["labels"] = labels
    return build_from_config(ModelConfig(architecture=name, model_args=model_args, **cfg))


def build_from_config(config: ModelConfig) -> CancerModel:
    """Build the (randomly initialised) model that ``config`` describes."""
    try:
        model = _builders[config.architecture](**config.model_args)
    except TypeError as e:
        raise ValueError(f"bad model_args for {config.architecture!r}: {e}") from e
    model.config = config
    return model
