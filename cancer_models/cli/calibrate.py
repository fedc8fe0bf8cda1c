"""Fit what makes a model's answers trustworthy, without retraining, and rewrite its folder:

- rejection of images unlike the training data (Mahalanobis distances of mid-level features and of image
  statistics, limits that accept ``--acceptance`` of the validation groups; ``--refuse`` image sets lower them
  until those sets are refused; ``--layers-over collections`` sets the feature limits on each lab left out);
- prediction sets at the level chosen for the model (or 1 - ``--alpha``), with and without test-time views;
- with ``--masks``, the CAM layers and method whose map peaks inside the lesion most often (chosen on the
  validation split, measured on the test split).

A cross-validated ensemble is fitted on its out-of-fold predictions. Training runs the same steps at its end.

    cancer-models calibrate --model runs/histo --data DIR --refuse OTHER_MODALITY_DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config import TTA_VIEWS

HELP = "fit rejection limits, prediction sets and the default explanation of a trained model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="model folder (rewritten in place)")
    parser.add_argument("--data", required=True, nargs="+", help="the image set(s) it was trained on")
    parser.add_argument(
        "--acceptance", type=float, default=None, help="share of the model's own image groups to accept (default: 0.99)"
    )
    parser.add_argument(
        "--alpha", type=float, default=None, help="miscoverage of the prediction sets (default: chosen for the model)"
    )
    parser.add_argument(
        "--masks",
        nargs=2,
        type=Path,
        metavar=("IMAGES", "MASKS"),
        help="an image set and its lesion masks (0/255 PNGs at the images' relative paths)",
    )
    parser.add_argument("--refuse", nargs="+", default=[], help="image sets the model must refuse")
    parser.add_argument(
        "--layers-over",
        choices=("groups", "collections"),
        default="groups",
        help="set the feature-layer limits on held-out groups, or on each collection (lab) as a detector fitted "
        "without it scores it, so that another lab's stain is not refused (default: groups)",
    )
    parser.add_argument("--tta-views", choices=TTA_VIEWS, default=None, help="test-time views (default: keep)")
    parser.add_argument(
        "--tile-size",
        type=int,
        default=None,
        help="side of the training images in source pixels, for cutting slides (default: keep)",
    )
    parser.add_argument("--tile-mpp", type=float, default=None, help="their microns per pixel, where known")


def run(args: argparse.Namespace) -> int:
    from ..calibration.fitting import DEFAULT_ACCEPTANCE, calibrate_folder
    from ..errors import ConfigError
    from ..settings import TileSpec

    if args.tile_mpp and not args.tile_size:
        raise ConfigError("--tile-mpp gives the scale of --tile-size: give both")
    tile = TileSpec(args.tile_size, args.tile_mpp) if args.tile_size else None
    settings = {"tta_views": args.tta_views, "tile": tile}
    report = calibrate_folder(
        args.model,
        args.data,
        DEFAULT_ACCEPTANCE if args.acceptance is None else args.acceptance,
        args.alpha,
        args.refuse,
        args.masks,
        {k: v for k, v in settings.items() if v is not None},
        args.layers_over == "collections",
    )
    print(json.dumps(report))
    return 0
