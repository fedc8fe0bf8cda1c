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
from ..inference.predict import Prediction, Predictor
from ..inference.routing import route
from ..models import load_pretrained
from ..sources import display_name

HELP = "classify images with one model, or route each to the model that recognises it"
COLUMNS = ["file", "model", "decision", "p_malignant", "threshold", "prediction_set", "unusualness", "error"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    parser.add_argument("--model", required=True, nargs="+", help="model folder(s) or Hub repo id(s)")
    parser.add_argument("--tta", action="store_true", help="average the model's test-time views")


def run(args: argparse.Namespace) -> int:
    predictors = {display_name(m): Predictor(load_pretrained(m)) for m in args.model}
    writer = csv.DictWriter(sys.stdout, COLUMNS)
    writer.writeheader()
    failed = 0
    for path in args.images:
        try:  # one unreadable file does not stop the others
            name, prediction = _predict(predictors, path, args.tta)
            writer.writerow({"file": path.name, "model": name, **_row(prediction)})
        except ImageError as e:
            writer.writerow({"file": path.name, "error": str(e)})
            failed += 1
    return 2 if failed else 0


def _predict(predictors: dict[str, Predictor], path: Path, tta: bool) -> tuple[str, Prediction]:
    if len(predictors) == 1:
        ((name, predictor),) = predictors.items()
        return name, predictor.predict(path, tta=tta)
    chosen = route(predictors, path)
    if chosen.model is None:  # every model refuses it: no model answers, the closest is named as such
        return f"none (closest: {chosen.closest})", chosen.predictions[chosen.closest]
    return chosen.model, predictors[chosen.model].predict(path, tta=tta) if tta else chosen.predictions[chosen.model]


def _row(p: Prediction) -> dict[str, object]:
    """A refused image gets no probability, threshold or set: there is nothing to read into them."""
    answered = p.in_distribution
    return {
        "decision": p.decision,
        "p_malignant": f"{p.malignant_probability:.4f}" if answered else "",
        "threshold": f"{p.threshold:.4f}" if answered else "",
        "prediction_set": "+".join(p.prediction_set) if answered and p.prediction_set else "",
        "unusualness": "" if p.ood_score is None else f"{p.ood_score:.2f}",
        "error": p.refused_because or "",
    }
