"""Evaluate a model on an image folder: `python -m cancer_models.evaluate --model DIR_OR_REPO --data DIR`.

The data folder is an imagefolder with split subfolders (train/validation/test) or flat benign/ and
malignant/ folders. Prints progress to stderr and one JSON object as the last line of stdout; with
--out also writes plots and a markdown report.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from datasets import Image as ImageFeature

from .data import DataSpec, load_raw, mask_path, parse_label_map, standardise
from .decoding import decode_split
from .errors import CheckpointError, ConfigError, DataError
from .localization import explanation_quality
from .metrics import binary_metrics, subtype_metrics, summarize
from .model_card import RESEARCH_WARNING, metrics_table
from .models import CancerModel, load_pretrained
from .plots import write_plots
from .predict import Predictor
from .robustness import SHIFTS, shift_report


def evaluate(
    model: CancerModel,
    data: str | Path,
    split: str | None = None,
    tta: bool = False,
    label_map: dict[str, str] | None = None,
    batch_size: int = 64,
) -> tuple[dict, dict]:
    """Metrics of ``model`` on one split of ``data`` (a folder or Hub dataset id), and the raw per-image results."""
    splits = load_raw(str(data))
    if split is None:
        split = "test" if "test" in splits else next(iter(splits)) if len(splits) == 1 else None
        if split is None:
            raise DataError(f"{data} has splits {sorted(splits)} and none is 'test': choose one with --split")
    if split not in splits:
        raise DataError(f"{data} has no split {split!r} (found {sorted(splits)})")
    ds = standardise(splits[split], DataSpec([str(data)], label_map=label_map or {}), f"{data}/{split}", str(data))
    decoded = decode_split(ds, model.config.input_size)
    paths = [item["path"] for item in ds.cast_column("image", ImageFeature(decode=False))["image"]]
    predictor = Predictor(model, tta=tta, batch_size=batch_size)
    probs = predictor.probabilities(decoded.images)[:, 1].numpy()
    # Groups only matter for the bootstrap; without a group column every image is its own group anyway.
    metrics = binary_metrics(decoded.targets.numpy(), probs, model.config.threshold, decoded.groups)
    if any(decoded.subtypes):
        metrics["subtypes"] = subtype_metrics(decoded.targets.numpy(), probs, model.config.threshold, decoded.subtypes)
    # A flat benign/ malignant/ folder loads as one "train" split; call it what it is.
    metrics.update(split=split if len(splits) > 1 else "all", tta=tta)
    raw = {"targets": decoded.targets.tolist(), "p_malignant": probs.tolist(), "groups": decoded.groups, "paths": paths}
    return metrics, raw


def write_report(out: Path, model: CancerModel, metrics: dict, raw: dict, model_name: str, data_name: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(out, raw["targets"], raw["p_malignant"], metrics["threshold"], model.config.labels)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    tn, fp, fn, tp = (v for row in metrics["confusion_matrix"] for v in row)
    lines = [
        f"# Evaluation of {model_name}",
        f"> {RESEARCH_WARNING}",
        (
            f"Data: `{data_name}`, split `{metrics['split']}`: {metrics['n']} images ({metrics['n_benign']} "
            f"{model.config.labels[0]}, {metrics['n_malignant']} {model.config.labels[1]}); test-time augmentation: "
            f"{'on' if metrics['tta'] else 'off'}; threshold {metrics['threshold']:.3f}. Intervals: 95% bootstrap over "
            f"{metrics['bootstrap']['resamples']} resamples of {metrics['bootstrap']['unit']}s."
        ),
        metrics_table(metrics),
        f"Confusion matrix: TN {tn}, FP {fp}, FN {fn}, TP {tp}.",
        *[f"![{p.stem}]({p.name})" for p in plots],
    ]
    (out / "report.md").write_text("\n\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cancer_models.evaluate", description=__doc__)
    parser.add_argument("--model", required=True, help="model folder or Hub repo id")
    parser.add_argument("--data", required=True, help="imagefolder directory")
    parser.add_argument("--split", default=None, help="split to evaluate (default: test, or the only one)")
    parser.add_argument("--tta", action="store_true", help="average the 8 flips/rotations")
    parser.add_argument("--label-map", default="", help="map raw labels onto benign/malignant, e.g. 'lung_n=benign'")
    parser.add_argument("--out", type=Path, default=None, help="write plots and report.md here")
    parser.add_argument("--revision", default=None, help="Hub revision")
    parser.add_argument(
        "--masks",
        type=Path,
        default=None,
        help="lesion masks (0/255 PNGs at the images' relative paths): also "
        "measure whether the explanations point at the lesion",
    )
    parser.add_argument(
        "--shifts",
        default=None,
        help="also re-score under acquisition shifts: 'all' or a comma-separated list of robustness.SHIFTS "
        "(zoom, JPEG, blur, brightness, contrast, stain)",
    )
    parser.add_argument(
        "--cam-methods", default="gradcam,gradcam++,layercam,eigencam", help="CAM methods to measure with --masks"
    )
    args = parser.parse_args(argv)
    try:
        model = load_pretrained(args.model, revision=args.revision)
        metrics, raw = evaluate(model, args.data, args.split, args.tta, parse_label_map(args.label_map))
        if args.masks:
            masks = [mask_path(p, args.data, args.masks) for p in raw["paths"]]
            metrics["explanations"] = explanation_quality(
                Predictor(model), [Path(p) for p in raw["paths"]], masks, args.cam_methods.split(",")
            )
        if args.shifts:
            shifts = list(SHIFTS) if args.shifts == "all" else args.shifts.split(",")
            metrics["shifts"] = shift_report(
                Predictor(model, tta=args.tta), raw["paths"], raw["targets"], raw["groups"], shifts
            )
    except (CheckpointError, ConfigError, DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summarize(metrics), file=sys.stderr)
    for name, m in metrics.get("shifts", {}).items():
        figures = ", ".join(
            f"{k} {'n/a' if m[k] is None else f'{m[k]:.3f}'}" for k in ("auc", "sensitivity", "specificity")
        )
        print(f"  {name}: {figures}", file=sys.stderr)
    if args.out:
        write_report(args.out, model, metrics, raw, args.model, args.data)
        print(f"wrote {args.out}", file=sys.stderr)
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
