"""Train a classifier on image sets (imagefolder folders or Hub datasets) and write a Hub-ready model folder
(config.json, model.safetensors, ood.safetensors, README.md model card, plots, metrics.json, history.csv).

    cancer-models train --data DIR --task histopathology --output-dir runs/histo
    accelerate launch -m cancer_models train --data DIR --output-dir runs/histo   (several GPUs or machines)
"""

from __future__ import annotations

import argparse

from ..training.config import TrainConfig
from .arguments import add_dataclass_arguments, dataclass_from_args

HELP = "train a model on image sets (one process, or several under accelerate launch)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_arguments(parser, TrainConfig)


def run(args: argparse.Namespace) -> int:
    from ..training.trainer import train

    train(dataclass_from_args(TrainConfig, args))
    return 0
