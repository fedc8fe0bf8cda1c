"""Export a model for deployment without this package: an ONNX graph that takes an RGB image (0-255, resized to
the model's input size) and returns calibrated probabilities and the features the rejection check measures;
everything else (labels, threshold, sets, rejection limits) is in the file's metadata.

    cancer-models export --model models/histopathology-cancer-cnn --out histopathology.onnx
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "export a model as ONNX"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder or Hub repo id")
    parser.add_argument("--format", choices=["onnx"], default="onnx")
    parser.add_argument("--out", required=True, type=Path, help="the .onnx file to write")


def run(args: argparse.Namespace) -> int:
    from ..inference.export import export_onnx
    from ..inference.pretrained import load_pretrained

    path = export_onnx(load_pretrained(args.model, device="cpu"), args.out)
    print(json.dumps({"onnx": str(path), "bytes": path.stat().st_size}))
    return 0
