"""Options generated from config dataclasses, so every option is documented in one place: the field."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written, and each option's default where it has one worth saying: not for a
    required option, a flag that is off, or an option whose help already says its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unsaid = action.default is None or action.default is False or action.default in ("", argparse.SUPPRESS)
        if action.required or unsaid or "default" in text:
            return text
        return super()._get_help_string(action)


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one ``--option`` per field of the dataclass ``cls`` (help from the field's metadata)."""
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


def dataclass_from_args(cls: type, args: argparse.Namespace) -> Any:
    """The ``cls`` instance the parsed ``args`` describe (other attributes of ``args`` are left out)."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})
