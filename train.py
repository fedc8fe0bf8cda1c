"""Train a classifier: ``accelerate launch train.py --data DIR [...]`` or ``python train.py --data DIR [...]``.

The same as ``cancer-models train`` (see ``cancer-models train --help`` for every option).
"""

import sys

from cancer_models.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
