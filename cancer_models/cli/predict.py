"""Classify images (JPEG, PNG, TIFF, DICOM, ...) and print one CSV row per file: the decision (benign,
malignant, uncertain when both classes stay plausible, or not recognised when the image is unlike the training
images), the calibrated malignant probability, the prediction set and how unusual the image is for the model.

    cancer-models predict --model models/histopathology-cancer-cnn tile1.jpg tile2.png
    cancer-models predict --model models/*-cancer-cnn scan.dcm     (several models: each image goes to the one
                                                                    whose rejection check accepts it best)

Research software, not a medical device: never a diagnosis. An unreadable file gets its error in its row.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from ..errors import ImageError
from ..sources import display_name

HELP = "classify images with one model, or route each to the model that recognises it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    parser.add_argument("--model", required=True, nargs="+", help="model folder(s) or Hub repo id(s)")
    parser.add_argument("--tta", action="store_true", help="average the model's test-time views")


def run(args: argparse.Namespace) -> int:
    from ..inference.predict import Predictor
    from ..inference.pretrained import load_pretrained
    from ..inference.routing import ROW_COLUMNS, answer

    predictors = {display_name(m): Predictor(load_pretrained(m)) for m in args.model}
    writer = csv.DictWriter(sys.stdout, ROW_COLUMNS)
    writer.writeheader()
    failed = 0
    for path in args.images:
        try:  # one unreadable file does not stop the others
            answered = answer(predictors, path, args.tta)
            writer.writerow(answered.row(str(path)))
            note = answered.model and answered.large_image_note(predictors[answered.model].config)
            if note:
                print(f"warning: {path}: {note}", file=sys.stderr)
        except ImageError as e:
            writer.writerow({"file": str(path), "error": str(e)})
            failed += 1
    return 2 if failed else 0
