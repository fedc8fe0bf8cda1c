"""The ``cancer-models`` command line (``main``) and its subcommands, one module each."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
