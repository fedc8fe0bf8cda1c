"""``cancer-models``: one command, one subcommand per job, one place that turns errors into messages.

    cancer-models predict --model models/histopathology-cancer-cnn tile.jpg
    cancer-models train --data DIR --output-dir runs/x       (or: accelerate launch -m cancer_models train ...)
    cancer-models --help

Every subcommand prints its result (JSON on the last line of stdout where there is one) and exits 0; a problem
the user can fix (a missing folder, a bad option, an unreadable image) is one ``error:`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import CancerModelsError

# Each subcommand module is light (its job's libraries load when it runs), so the help needs no torch.
from . import calibrate, compare, evaluate, export, predict, push, recipes, slides, sources, train
from .arguments import HelpFormatter

# (name, module): each module has HELP, add_arguments(parser) and run(args) -> int.
COMMANDS = {
    "predict": predict,
    "slides": slides,
    "train": train,
    "evaluate": evaluate,
    "compare": compare,
    "recipes": recipes,
    "sources": sources,
    "calibrate": calibrate,
    "export": export,
    "push": push,
}
EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cancer-models",
        description="Explainable benign-vs-malignant image classifiers (research software, not a medical device).",
    )
    jobs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        doc = module.__doc__ or ""
        sub = jobs.add_parser(
            name,
            help=module.HELP,
            description=doc,
            formatter_class=HelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cancer-models`` with ``argv`` (default: the process's arguments); returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (CancerModelsError, ValueError, OSError) as e:  # ValueError: a bad value the library was handed
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
