"""Command lines generated from config dataclasses, so every option is documented in one place."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any


def parse_dataclass_args(cls: type, description: str | None = None, argv: list[str] | None = None) -> Any:
    """Build an argparse parser from ``cls``'s fields (help from their metadata) and parse ``argv``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        optional = type(None) in typing.get_args(kind)
        if optional:
            kind = next(a for a in typing.get_args(kind) if a is not type(None))  # X | None -> X
        kwargs: dict[str, Any] = {"help": f.metadata.get("help", ""), "default": f.default}
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is list:  # a list without a default is required, unless it may be None
            kwargs.update(nargs="+", type=typing.get_args(kind)[0], required=f.default is None and not optional)
        else:
            kwargs["type"] = kind
        parser.add_argument(flag, **kwargs)
    return cls(**vars(parser.parse_args(argv)))
