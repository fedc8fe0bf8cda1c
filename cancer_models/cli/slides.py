"""Classify large images and whole slides tile by tile at the model's scale: tissue found on a thumbnail, every
tissue tile classified and checked (tiles unlike the training tiles are refused and shown apart), and the result
written per file as a heatmap, an overlay, a tile CSV, QuPath GeoJSON (File > Import objects from file) and a
summary.

    cancer-models slides --model models/histopathology-cancer-cnn --out results/ slide.svs field.png

Slides are read through OpenSlide (.svs, .ndpi, .mrxs, pyramidal TIFF, ...); other images (PNG, JPEG, TIFF,
DICOM) whole. Prints one JSON summary per file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import ImageError

HELP = "tile, classify and map large images and whole slides (QuPath GeoJSON)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, help="slides or large images")
    parser.add_argument("--model", required=True, help="model folder or Hub repo id")
    parser.add_argument("--out", required=True, type=Path, help="folder for the outputs")
    parser.add_argument("--tile-size", type=int, default=None, help="tile side in level-0 pixels (default: model's)")
    parser.add_argument("--mpp", type=float, default=None, help="the slides' microns per pixel (default: their own)")
    parser.add_argument("--overlap", type=float, default=0.0, help="share of a tile its neighbours overlap")
    parser.add_argument(
        "--min-tissue", type=float, default=None, help="share of a tile that must be tissue (default: 0.25)"
    )
    parser.add_argument("--explain", type=int, default=0, metavar="K", help="Grad-CAM of the K top tiles")
    parser.add_argument("--batch-size", type=int, default=64, help="tiles per forward pass (default: 64)")


def run(args: argparse.Namespace) -> int:
    from ..inference.predict import Predictor
    from ..inference.pretrained import load_pretrained
    from ..inference.slide_outputs import write_outputs
    from ..inference.slides import MIN_TISSUE, SlidePredictor

    predictor = Predictor(load_pretrained(args.model), batch_size=args.batch_size)
    min_tissue = MIN_TISSUE if args.min_tissue is None else args.min_tissue
    slides = SlidePredictor(predictor, args.tile_size, args.mpp, args.overlap, min_tissue, args.batch_size)
    failed = 0
    for path in args.files:
        try:  # one unreadable file does not stop the others
            result = slides.predict(path, progress=True)
            if args.explain:
                slides.explain_top(result, path, args.explain)
            write_outputs(result, args.out)
            print(json.dumps(result.summary()))
        except ImageError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
    return 2 if failed else 0
