"""What each shipped model refuses: its own test split (should be accepted), the other modalities' test splits,
the foreign development set (``foreign_images.py``) and generated non-medical images (should be rejected); how
its prediction sets behave on its own test split with and without test-time augmentation; and where the
automatic choice sends each modality's test images.

    python benchmarks/rejection.py [--n 400] [--seed 1] [--record]

``--record`` writes each model's foreign-set acceptance beside it (``evaluations.json``) and into its card.

Generated images: uniform and Gaussian noise, flat colours, colour gradients, ellipses, rectangles, text,
and square crops of the photographs gradio and scikit-learn ship (cheetahs, a lion, a tower, a flower, a
temple). Needs the data set (../shared/data or CANCER_DATA). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import gradio
import numpy as np
import sklearn
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _common import DATA, command, machine  # noqa: E402
from foreign_images import foreign_sets, sets_for  # noqa: E402

from cancer_models import Predictor, load_image, load_pretrained  # noqa: E402
from cancer_models.evaluation.evaluate import record_evaluation  # noqa: E402
from cancer_models.inference.routing import route  # noqa: E402

TASKS = ("histopathology", "dermoscopy", "ultrasound")
KINDS = ("uniform noise", "gaussian noise", "flat colour", "gradient", "ellipses", "rectangles", "text", "photo")
PHOTOS = [
    *(Path(gradio.__file__).parent / "media_assets" / "images" / n for n in ("cheetah.jpg", "lion.jpg", "tower.jpg")),
    *(Path(sklearn.__file__).parent / "datasets" / "images" / n for n in ("flower.jpg", "china.jpg")),
]


def generated(kind: str, rng: np.random.Generator, size: int = 160) -> Image.Image:
    colour = lambda: tuple(rng.integers(0, 256, 3).tolist())  # noqa: E731
    if kind == "uniform noise":
        return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    if kind == "gaussian noise":
        return Image.fromarray(np.clip(rng.normal(128, rng.uniform(10, 80), (size, size, 3)), 0, 255).astype(np.uint8))
    if kind == "flat colour":
        return Image.new("RGB", (size, size), colour())
    if kind == "gradient":
        t = np.linspace(0, 1, size)[None, :, None]
        c0, c1 = rng.integers(0, 256, (2, 3))
        return Image.fromarray((c0 + (c1 - c0) * t).repeat(size, 0).astype(np.uint8))
    if kind in ("ellipses", "rectangles"):
        image = Image.new("RGB", (size, size), colour())
        draw = ImageDraw.Draw(image)
        for _ in range(rng.integers(1, 8)):
            (x0, x1), (y0, y1) = np.sort(rng.integers(0, size, (2, 2)), axis=1).tolist()
            (draw.ellipse if kind == "ellipses" else draw.rectangle)([x0, y0, x1, y1], fill=colour())
        return image
    if kind == "text":
        image = Image.new("RGB", (size, size), "white")
        lines = ["".join(rng.choice(list("abcdefghijklmnop "), 20)) for _ in range(8)]
        ImageDraw.Draw(image).multiline_text((5, 5), "\n".join(lines), fill="black")
        return image
    photo = Image.open(PHOTOS[rng.integers(len(PHOTOS))]).convert("RGB")
    w, h = photo.size
    side = int(rng.integers(min(w, h) // 4, min(w, h)))
    x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    return photo.crop((x, y, x + side, y + side))


def accepted(predictor: Predictor, images: list) -> float:
    return round(float(np.mean([p.in_distribution for p in predictor.predict(images)])), 4)


def sets_on_test(predictor: Predictor, images: list, truth: list[str]) -> dict:
    """Coverage, share uncertain and uncertain among confident answers on accepted test images, with and
    without test-time augmentation."""
    out = {}
    for tta in (False, True):
        kept = [(p, t) for p, t in zip(predictor.predict(images, tta=tta), truth, strict=True) if p.in_distribution]
        confident = [p for p, _ in kept if max(p.probabilities.values()) >= 0.95]
        key = "tta" if tta else "plain"
        out[key] = {
            "coverage": round(float(np.mean([t in p.prediction_set for p, t in kept])), 4),
            "uncertain": round(float(np.mean([p.decision == "uncertain" for p, _ in kept])), 4),
            "uncertain_when_confident": round(float(np.mean([p.decision == "uncertain" for p in confident])), 4)
            if confident
            else 0.0,
            "n": len(kept),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=400, help="generated images, spread over the kinds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--record", action="store_true", help="write the foreign-set figures into each model")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    kinds = [KINDS[i % len(KINDS)] for i in range(args.n)]
    fake = [generated(kind, rng) for kind in kinds]
    files = {task: sorted((DATA / task / "test").glob("*/*.jpg")) for task in TASKS}
    tests = {task: [load_image(f) for f in paths] for task, paths in files.items()}
    foreign = foreign_sets(DATA)
    report = {"benchmark": "rejection", "command": command(), "machine": machine(), "models": {}}
    predictors = {}
    for task in TASKS:
        folder = ROOT / "models" / f"{task}-cancer-cnn"
        predictor = predictors[task] = Predictor(load_pretrained(folder))
        by_kind = {k: accepted(predictor, [im for im, kk in zip(fake, kinds) if kk == k]) for k in KINDS}
        own = sets_for(task, foreign)
        foreign_accepted = {name: accepted(predictor, images) for name, images in own.items()}
        all_foreign = [im for images in own.values() for im in images]
        report["models"][f"{task}-cancer-cnn"] = {
            "own_test_rejected": round(1 - accepted(predictor, tests[task]), 4),
            "other_modalities_accepted": {t: accepted(predictor, tests[t]) for t in TASKS if t != task},
            "foreign_development_set_accepted": foreign_accepted,
            "foreign_development_set_accepted_overall": accepted(predictor, all_foreign),
            "generated_accepted": accepted(predictor, fake),
            "generated_accepted_by_kind": by_kind,
            "prediction_sets_on_own_test": sets_on_test(predictor, tests[task], [f.parent.name for f in files[task]]),
            "n": {"own_test": len(tests[task]), "generated": len(fake), "foreign": {k: len(v) for k, v in own.items()}},
        }
        if args.record:
            record_evaluation(
                folder, "foreign_images", {"accepted": foreign_accepted, "n": {k: len(v) for k, v in own.items()}}
            )
    report["automatic_choice"] = {}
    for task, images in tests.items():
        routes = [route(predictors, im) for im in images]
        report["automatic_choice"][task] = {
            "to_own_model": round(float(np.mean([r.model == task for r in routes])), 4),
            "closest_is_own_model": round(float(np.mean([r.closest == task for r in routes])), 4),
            "n": len(images),
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
