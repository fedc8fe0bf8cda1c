"""Evaluate a model on one split of an image set: AUC, sensitivity, specificity and more with 95% intervals from a
bootstrap over groups (near-copies resample together), per diagnostic category where the set has them.

    cancer-models evaluate --model models/ultrasound-cancer-cnn --data DIR [--out report/]

Prints a summary to stderr and one JSON object as the last line of stdout; ``--out`` also writes plots and a
markdown report; ``--record`` stores the shift table in the model's evaluations.json (its card shows it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..data.spec import parse_label_map

HELP = "score a model on a labelled image set, with intervals"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder or Hub repo id")
    parser.add_argument("--data", required=True, help="imagefolder directory or Hub dataset id")
    parser.add_argument(
        "--split",
        default="test",
        choices=["test", "validation", "train", "left_out", "all"],
        help="split to score; on one of the model's training sets without this split folder, the training run's "
        "split is recreated from the model's record. 'left_out': the collections a --leave-out run never saw. "
        "'all' scores every image, training images included, and says so",
    )
    parser.add_argument("--tta", action="store_true", help="average the model's test-time views")
    parser.add_argument("--label-map", default="", help="map raw labels onto benign/malignant, e.g. 'lung_n=benign'")
    parser.add_argument("--out", type=Path, default=None, help="write plots and report.md here")
    parser.add_argument("--revision", default=None, help="Hub revision")
    parser.add_argument(
        "--masks",
        type=Path,
        default=None,
        help="lesion masks (0/255 PNGs at the images' relative paths): also measure whether the "
        "explanations point at the lesion, on the images that have a mask file; 'breast' (mammography models): at the breast its preprocessing keeps",
    )
    parser.add_argument(
        "--cam-methods", default="gradcam,gradcam++,layercam,eigencam", help="CAM methods to measure with --masks"
    )
    parser.add_argument(
        "--shifts",
        default=None,
        help="also re-score under acquisition shifts: 'all', or a comma-separated list of their names (zoom in "
        "1.5x, JPEG quality 30, blur, stain, ...: an unknown name lists them)",
    )
    parser.add_argument(
        "--record", action="store_true", help="store the shift table in the (local) model folder's evaluations.json"
    )


def run(args: argparse.Namespace) -> int:
    from ..evaluation.evaluate import evaluate, record_evaluation, write_report
    from ..evaluation.metrics import summarize
    from ..evaluation.robustness import SHIFTS, shift_report
    from ..inference.predict import Predictor
    from ..inference.pretrained import load_pretrained

    model = load_pretrained(args.model, revision=args.revision)
    result = evaluate(model, args.data, args.split, args.tta, parse_label_map(args.label_map))
    metrics, images = result.to_dict(), result.images
    if args.masks:
        metrics["explanations"] = _explanations(args, Predictor(model), images.paths)
    if args.shifts:
        shifts = list(SHIFTS) if args.shifts == "all" else args.shifts.split(",")
        unknown = [name for name in shifts if name not in SHIFTS]
        if unknown:
            raise ValueError(f"unknown shift(s) {', '.join(unknown)}; choose from {', '.join(SHIFTS)}")
        metrics["shifts"] = shift_report(
            Predictor(model, tta=args.tta), images.paths, images.targets, images.groups, shifts
        )
    print(f"scored {metrics['split_note']}", file=sys.stderr)
    print(summarize(metrics), file=sys.stderr)
    if "refused" in metrics:
        answered = f"; answered: {summarize(metrics['answered'])}" if "answered" in metrics else ""
        print(f"refused {metrics['refused']:.1%}{answered}", file=sys.stderr)
    for name, m in metrics.get("shifts", {}).items():
        figures = ", ".join(
            f"{k} {'n/a' if m[k] is None else f'{m[k]:.3f}'}" for k in ("auc", "sensitivity", "specificity")
        )
        print(f"  {name}: {figures}", file=sys.stderr)
    if args.record and args.shifts:
        note = (
            f"`cancer-models evaluate --split {metrics['split']} --shifts {args.shifts}`: each shift applied to "
            "every image at the model's own threshold; 95% AUC intervals by group bootstrap."
        )
        record_evaluation(
            args.model, "robustness", {"split": metrics["split"], "shifts": metrics["shifts"], "note": note}
        )
    if args.out:
        write_report(args.out, model, metrics, images, args.model, args.data)
        print(f"wrote {args.out}", file=sys.stderr)
    print(json.dumps(metrics))
    return 0


def _explanations(args: argparse.Namespace, predictor, paths: list[str]) -> dict:
    """How often the maps point at the lesion (or the breast), on the scored images that have a mask file."""
    from ..data.image_sets import with_mask_files
    from ..evaluation.localization import explanation_quality

    methods = args.cam_methods.split(",")
    if args.masks == "breast":
        return explanation_quality(predictor, [Path(p) for p in paths], None, methods)
    images, masks = with_mask_files(paths, args.data, args.masks, "the scored split")
    report = explanation_quality(predictor, images, masks, methods)
    return {**report, "without_mask_file": len(paths) - len(images)}
