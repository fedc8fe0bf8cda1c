"""Publish a model folder to the Hugging Face Hub: ``python push_to_hub.py FOLDER OWNER/NAME [--dry-run]``.

The same as ``cancer-models push`` (see ``cancer-models push --help``).
"""

import sys

from cancer_models.cli import main

if __name__ == "__main__":
    sys.exit(main(["push", *sys.argv[1:]]))
