"""Checks against the full data set; skipped where ../shared/data is absent (a fresh clone)."""

import csv

import pytest

from cancer_models import Predictor, load_image


@pytest.mark.parametrize("task", ["histopathology", "dermoscopy", "ultrasound"])
def test_every_test_split_image_decodes_and_classifies(shared_data, small_cnn, task):
    split = shared_data / task / "test"
    with open(split / "metadata.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and {r["label"] for r in rows} == {"benign", "malignant"}
    images = [load_image(split / r["file_name"]) for r in rows]
    assert all(im.mode == "RGB" and max(im.size) <= 160 for im in images)
    predictions = Predictor(small_cnn, batch_size=64).predict(images[:64])
    assert len(predictions) == min(64, len(images))
