"""The decision layer on the shipped models: confident answers are never "uncertain", and every image goes to
the model of its kind or to none."""

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import fixture_images

from cancer_models import Predictor, load_pretrained
from cancer_models.inference.routing import route, route_many

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from foreign_images import foreign_sets, sets_for

TASKS = ("histopathology", "dermoscopy", "ultrasound")


@pytest.fixture(scope="module")
def predictors() -> dict[str, Predictor]:
    return {task: Predictor(load_pretrained(ROOT / "models" / f"{task}-cancer-cnn")) for task in TASKS}


@pytest.fixture(scope="module")
def foreign() -> dict:
    return foreign_sets()  # the package images only (no data set needed)


def _own_images(task: str) -> list[Path]:
    return [p for split in ("train", "validation", "test") for p in fixture_images(task, split)]


@pytest.mark.parametrize("task", TASKS)
def test_every_fixture_image_goes_to_the_model_of_its_kind(predictors, task):
    images = _own_images(task)
    assert len(images) >= 4
    routes = route_many(predictors, images)
    assert [r.model for r in routes] == [task] * len(images), [r.unusualness for r in routes]
    one = route(predictors, images[0])  # one image alone: the same choice and figures as in a batch
    assert one.model == routes[0].model and one.unusualness == pytest.approx(routes[0].unusualness, rel=1e-4)
    assert "Chosen automatically" in routes[0].reason() and task in routes[0].reason()


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("tta", [False, True])
def test_a_confident_answer_is_never_uncertain(predictors, task, tta):
    predictor = predictors[task]
    for p in predictor.predict([str(f) for f in _own_images(task)], tta=tta):
        assert p.prediction_set, "a recognised image always has a non-empty set"
        assert p.decision in p.prediction_set or p.decision == "uncertain"
        if max(p.probabilities.values()) >= 0.95:
            assert p.decision != "uncertain", p
        if p.decision == "uncertain":
            assert len(p.prediction_set) == 2


def test_tta_never_turns_a_confident_correct_answer_into_uncertain(predictors):
    tiles = fixture_images("histopathology", "test")
    truth = [f.parent.name for f in tiles]
    plain = predictors["histopathology"].predict(tiles, tta=False)
    augmented = predictors["histopathology"].predict(tiles, tta=True)
    for p, q, label in zip(plain, augmented, truth, strict=True):
        if p.decision == label and p.probabilities[label] >= 0.95:
            assert q.decision != "uncertain"


def test_images_of_no_supported_kind_go_to_no_model(predictors, foreign):
    sets = foreign
    images = [im for name, ims in sets.items() if not name.startswith("ultrasound") for im in ims[::4]]
    assert len(images) >= 40
    routed = route_many(predictors, images)
    assert sum(r.model is not None for r in routed) == 0
    assert "None of the models recognises this image" in routed[0].reason()


@pytest.mark.parametrize("task", TASKS)
def test_each_model_refuses_the_foreign_development_sets(predictors, foreign, task):
    """At most 2% of every foreign set and 1% of all of them (docs/trust.md)."""
    accepted = []
    for name, images in sets_for(task, foreign).items():
        accepted += [p.in_distribution for p in predictors[task].predict(images)]
        assert np.mean(accepted[-len(images) :]) <= 0.02, (name, np.mean(accepted[-len(images) :]))
    assert np.mean(accepted) <= 0.01


SOURCES = {"histopathology": ("histopathology", "histopathology_glas"),
           "dermoscopy": ("dermoscopy", "dermoscopy_multiclass"), "ultrasound": ("ultrasound",)}  # fmt: skip


@pytest.mark.parametrize("task", TASKS)
def test_the_automatic_choice_sends_each_test_split_to_its_model(predictors, shared_data, task):
    """At least 97% of each modality's test images go to its own model; none goes to another one. Every other
    image, to keep the suite short: benchmarks/rejection.py routes them all."""
    files = sorted(f for source in SOURCES[task] for f in (shared_data / source / "test").glob("*/*.jpg"))[::2]
    chosen = [r.model for r in route_many(predictors, files)]
    assert np.mean([m == task for m in chosen]) >= 0.97
    assert not any(m not in (task, None) for m in chosen)


def test_no_model_takes_a_mammogram(predictors, shared_data):
    """Screening mammograms are a kind of image none of these models was trained on: every one is refused."""
    files = sorted((shared_data / "mammography" / "test").glob("*/*.jpg"))
    routes = route_many(predictors, files)
    assert len(files) > 200 and all(r.model is None for r in routes)
