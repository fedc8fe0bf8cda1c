"""The command line's start: seconds from a fresh interpreter to `cancer-models --help` and each subcommand's
`--help` (no subcommand loads torch or the data libraries for its help), against `import torch` alone.

    python benchmarks/cli_startup.py [--runs 5]

Prints one JSON object: the median over runs, per command.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _common import command, machine

from cancer_models.cli.main import COMMANDS


def seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    cases = {"cancer-models --help": ["-m", "cancer_models", "--help"]}
    cases |= {f"cancer-models {name} --help": ["-m", "cancer_models", name, "--help"] for name in COMMANDS}
    cases["python -c 'import torch' (for scale)"] = ["-c", "import torch"]
    result = {name: round(statistics.median(seconds(a) for _ in range(args.runs)), 3) for name, a in cases.items()}
    print(json.dumps({"command": command(), "machine": machine(), "median_seconds": result}, indent=2))


if __name__ == "__main__":
    main()
