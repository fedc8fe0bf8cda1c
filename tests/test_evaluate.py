"""Evaluation scores held-out images only: a train-only folder is split as its training run split it."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import fixture_images, train_only_folder
from datasets import Image as ImageFeature

from cancer_models import load_pretrained
from cancer_models.cli import main as cli_main
from cancer_models.data.image_sets import load_splits
from cancer_models.evaluation.evaluate import evaluate, write_report
from cancer_models.evaluation.metrics import rank_auc, subtype_pair_metrics
from cancer_models.reporting.model_folder import save_model_folder
from cancer_models.training.config import TrainConfig


def _paths(ds):
    return sorted(item["path"] for item in ds.cast_column("image", ImageFeature(decode=False))["image"])


@pytest.fixture
def trained_on_folder(tmp_path, small_cnn):
    """A model whose record says it was trained on a train-only folder with seed 3."""
    data = train_only_folder(tmp_path / "mine")
    small_cnn.config.training.data = [str(data)]
    small_cnn.config.training.settings = {"seed": 3, "test_fraction": 0.2, "validation_fraction": 0.2}
    save_model_folder(small_cnn, tmp_path / "model")
    return tmp_path / "model", data


def test_a_train_only_folder_is_scored_on_the_split_its_training_run_held_out(trained_on_folder, capsys):
    model, data = trained_on_folder
    assert cli_main(["evaluate", "--model", str(model), "--data", str(data)]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # What train.py itself would have split off with the recorded settings.
    config = TrainConfig(data=[str(data)], seed=3, test_fraction=0.2, validation_fraction=0.2)
    training = load_splits(config.data_spec())
    assert metrics["split"] == "test" and "recreated" in metrics["split_note"]
    assert not metrics["includes_training_images"]
    assert metrics["n"] == len(training["test"]) < 54
    from cancer_models import load_pretrained

    scored = evaluate(load_pretrained(model), data).images
    assert sorted(scored.paths) == _paths(training["test"])
    assert not set(scored.paths) & set(_paths(training["train"]))


def test_scoring_training_images_is_asked_for_and_said_first(trained_on_folder, tmp_path, capsys):
    model, data = trained_on_folder
    args = ["--model", str(model), "--data", str(data), "--split", "all", "--out", str(tmp_path / "r")]
    assert cli_main(["evaluate", *args]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["n"] == 54 and metrics["includes_training_images"]
    first_line = (tmp_path / "r" / "report.md").read_text().splitlines()[0]
    assert first_line.startswith("WARNING: includes images the model was trained on")


def test_a_folder_the_model_never_saw_is_scored_whole(tmp_path, small_cnn):
    data = train_only_folder(tmp_path / "elsewhere")
    small_cnn.config.training.data = [str(tmp_path / "the-training-set")]
    result = evaluate(small_cnn, data)
    assert result.metrics["n"] == len(result.images.paths) == 54 and result.split == "all"
    assert not result.includes_training_images and result.to_dict()["split"] == "all"


def test_refused_images_are_counted_and_the_answered_ones_scored_apart(tmp_path):
    """A folder of LC25000 tiles and dermoscopy photographs: the histopathology model refuses the photographs, and
    evaluation says how many and scores the tiles it answered apart from the whole."""
    folder = tmp_path / "mixed"
    for i, path in enumerate(fixture_images("histopathology", "test") + fixture_images("dermoscopy", "test")):
        target = folder / path.parent.name / f"{i}{path.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    model = load_pretrained(Path(__file__).resolve().parents[1] / "models" / "histopathology-cancer-cnn")
    result = evaluate(model, folder)
    metrics = result.to_dict()
    photographs = len(fixture_images("dermoscopy", "test"))
    assert metrics["refused"] == pytest.approx(photographs / metrics["n"])
    assert metrics["answered"]["n"] == metrics["n"] - photographs
    assert sum(u > 1 for u in result.images.unusualness) == photographs
    write_report(tmp_path / "report", model, metrics, result.images, "model", "mixed")
    report = (tmp_path / "report" / "report.md").read_text()
    assert f"refused {metrics['refused']:.1%} of these images" in report and "images it answered" in report


def test_each_malignant_category_is_scored_against_each_benign_one():
    """LC25000 tiles: colon and lung carcinomas against normal colon and lung, each pair on its own images."""
    folder = Path(__file__).parent / "fixtures" / "histopathology"
    model = load_pretrained(Path(__file__).resolve().parents[1] / "models" / "histopathology-cancer-cnn")
    result = evaluate(model, folder, "all")
    assert not result.metrics.get("subtype_pairs")  # under 20 images a category: no pair is claimed
    subtype_of = {}
    for split in ("train", "validation", "test"):
        with open(folder / split / "metadata.csv") as f:
            subtype_of |= {str((folder / split / r["file_name"]).resolve()): r["subtype"] for r in csv.DictReader(f)}
    scored = result.images
    subtypes = [subtype_of[str(Path(p).resolve())] for p in scored.paths]
    pairs = subtype_pair_metrics(scored.targets, scored.p_malignant, model.config.threshold, scored.groups, subtypes, 3)
    malignant, benign = ["colon_aca", "lung_aca", "lung_scc"], ["colon_n", "lung_n"]
    assert sorted(pairs) == sorted(f"{m} vs {b}" for m in malignant for b in benign)
    for name, m in pairs.items():
        ill, healthy = name.split(" vs ")
        index = [i for i, s in enumerate(subtypes) if s in (ill, healthy)]
        assert m["n_malignant"] == subtypes.count(ill) and m["n_benign"] == subtypes.count(healthy)
        y = np.array([scored.targets[i] for i in index])
        p = np.array([scored.p_malignant[i] for i in index])
        assert m["auc"] == pytest.approx(rank_auc(y, p))
    # A set labelled only by class (ISIC's benign / malignant) has no category to pair with another set's.
    coarse = ["malignant" if s == "colon_aca" else s for s in subtypes]
    pairs = subtype_pair_metrics(scored.targets, scored.p_malignant, model.config.threshold, scored.groups, coarse, 3)
    assert not any(name.startswith("malignant vs") for name in pairs) and "lung_scc vs colon_n" in pairs
