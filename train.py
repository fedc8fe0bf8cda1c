"""Train a cancer_models classifier: `accelerate launch train.py --data DIR [...]` (or plain `python train.py`).

Writes a Hub-ready folder (config.json, model.safetensors, README.md model card) with plots,
metrics.json and history.csv. Run with --help for every option.
"""

import sys

from cancer_models.cli import parse_dataclass_args
from cancer_models.errors import CheckpointError, ConfigError, DataError
from cancer_models.training import TrainConfig, train


def main(argv: list[str] | None = None) -> int:
    try:
        train(parse_dataclass_args(TrainConfig, description=__doc__, argv=argv))
    except (CheckpointError, ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
