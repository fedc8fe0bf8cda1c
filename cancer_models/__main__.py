"""``python -m cancer_models`` is ``cancer-models``."""

import sys

from .cli import main

sys.exit(main())
