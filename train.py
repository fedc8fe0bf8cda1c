"""Train a cancer_models classifier: `accelerate launch train.py --data DIR [...]` (or plain `python train.py`).

Writes a Hub-ready folder (config.json, model.safetensors, README.md model card) with plots,
metrics.json and history.csv. Run with --help for every option.
"""

import sys

from cancer_models.cli import parse_dataclass_args
from cancer_models.config import ConfigError
from cancer_models.data import DataError
from cancer_models.hub import CheckpointError
from cancer_models.training import TrainConfig, train

if __name__ == "__main__":
    try:
        train(parse_dataclass_args(TrainConfig, description=__doc__))
    except (CheckpointError, ConfigError, DataError) as e:
        sys.exit(f"error: {e}")
