"""What each shipped model refuses: its own test split (should be accepted), the other modalities' test splits,
the foreign development set (``foreign_images.py``) and generated non-medical images (should be rejected); how
its prediction sets behave on its own test split with and without test-time augmentation; and where the
automatic choice sends each modality's test images.

    python benchmarks/rejection.py [--n 400] [--seed 1] [--record] [--tasks histopathology ...]

``--record`` writes each model's foreign-set acceptance beside it (``evaluations.json``) and into its card.

Generated images: uniform and Gaussian noise, flat colours, colour gradients, ellipses, rectangles,
text-like strokes, and square crops of generated photograph-like scenes, made as the domain check's negatives
are (``cancer_models.calibration.negatives``, other random draws): a figure on what the check was taught, not on
images it has never seen; the foreign development set is that. Needs the data set (../shared/data or
CANCER_DATA). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _common import DATA, command, machine
from foreign_images import foreign_sets, sets_for

from cancer_models import Predictor, load_image, load_pretrained
from cancer_models.calibration import negatives
from cancer_models.evaluation.evaluate import record_evaluation
from cancer_models.inference.routing import route_many
from cancer_models.trust.conformal import CONFIDENT

TASKS = ("histopathology", "dermoscopy", "ultrasound")
# The test images of each model: the test splits of every data set it was trained on.
SOURCES = {"histopathology": ("histopathology",), "dermoscopy": ("dermoscopy", "dermoscopy_multiclass"),
           "ultrasound": ("ultrasound",)}  # fmt: skip
KINDS = (*negatives.KINDS, "scene")


def generated(kind: str, rng: np.random.Generator) -> Image.Image:
    if kind != "scene":
        return negatives.generated(kind, rng)
    return negatives.random_crop(negatives.scene(negatives.SCENES[rng.integers(len(negatives.SCENES))], rng), rng)


def accepted(predictor: Predictor, images: list) -> float:
    return round(float(np.mean([p.in_distribution for p in predictor.predict(images)])), 4)


def sets_on_test(predictor: Predictor, images: list, truth: list[str]) -> dict:
    """Coverage, share uncertain and uncertain among confident answers on accepted test images, with and
    without test-time augmentation."""
    out = {}
    for tta in (False, True):
        kept = [(p, t) for p, t in zip(predictor.predict(images, tta=tta), truth, strict=True) if p.in_distribution]
        confident = [p for p, _ in kept if max(p.probabilities.values()) >= CONFIDENT]
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
    parser.add_argument(
        "--tasks", nargs="+", choices=TASKS, default=list(TASKS), help="models to measure (the automatic choice: all)"
    )
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    kinds = [KINDS[i % len(KINDS)] for i in range(args.n)]
    fake = [generated(kind, rng) for kind in kinds]
    files = {
        task: sorted(f for source in SOURCES[task] for f in (DATA / source / "test").glob("*/*.jpg")) for task in TASKS
    }
    tests = {task: [load_image(f) for f in paths] for task, paths in files.items()}
    foreign = foreign_sets(DATA)
    report = {"benchmark": "rejection", "command": command(), "machine": machine(), "models": {}}
    predictors = {}
    for task in args.tasks:
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
        if len(SOURCES[task]) > 1:  # coverage holds over the mix the sets were calibrated on, not per source
            report["models"][f"{task}-cancer-cnn"]["prediction_sets_by_source"] = {
                source: sets_on_test(
                    predictor,
                    [im for im, f in zip(tests[task], files[task]) if f.parents[2].name == source],
                    [f.parent.name for f in files[task] if f.parents[2].name == source],
                )
                for source in SOURCES[task]
            }
        if args.record:
            record_evaluation(
                folder, "foreign_images", {"accepted": foreign_accepted, "n": {k: len(v) for k, v in own.items()}}
            )
    if len(predictors) == len(TASKS):  # where each modality's test images go needs every model
        report["automatic_choice"] = {
            task: automatic_choice(predictors, task, images) for task, images in tests.items()
        }
    print(json.dumps(report, indent=1))


def automatic_choice(predictors: dict[str, Predictor], task: str, images: list) -> dict:
    """How often the automatic choice sends ``task``'s test images to its own model, and finds it closest."""
    routes = route_many(predictors, images)
    return {
        "to_own_model": round(float(np.mean([r.model == task for r in routes])), 4),
        "closest_is_own_model": round(float(np.mean([r.closest == task for r in routes])), 4),
        "n": len(images),
    }


if __name__ == "__main__":
    main()
