"""Cross-validation (train.py --folds) on the fixture tiles, and the ensemble folder it writes, used like any model."""

import copy
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FIXTURES, fixture_images
from datasets import Image as ImageFeature

from cancer_models import CheckpointError, Predictor, create_model, load_pretrained
from cancer_models.cli import main as cli_main
from cancer_models.data.image_sets import fold_indices, load_splits, pooled_for_folds
from cancer_models.data.spec import DataSpec
from cancer_models.evaluation.localization import explanation_quality
from cancer_models.models import Ensemble
from cancer_models.record import TrainingRecord
from cancer_models.reporting.model_folder import save_model_folder
from cancer_models.reporting.tables import cross_validation_summary, recipe_selection_table
from cancer_models.training.cross_validation import _shared_record

HISTO = str(FIXTURES / "histopathology")
FAST = ["--input-size", "64", "--batch-size", "6", "--warmup-epochs", "0.5", "--augment", "histopathology"]


@pytest.fixture(scope="module")
def cross_validated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cv")
    assert cli_main(["train", "--data", HISTO, "--output-dir", str(out), "--folds", "2", "--epochs", "2", *FAST]) == 0
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_folds_hold_every_image_out_once_and_never_cut_a_group(seed):
    pooled = pooled_for_folds(load_splits(DataSpec([HISTO])))
    groups, targets = pooled["group"], pooled["target"]
    folds = fold_indices(targets, groups, 3, seed)
    held_out = np.concatenate([h for _, h in folds])
    assert sorted(held_out.tolist()) == list(range(len(pooled)))
    for keep, out in folds:
        assert not {groups[i] for i in keep} & {groups[i] for i in out}
        assert {targets[i] for i in out} == {0, 1}  # stratified: both classes in every fold


def test_cross_validation_writes_fold_models_and_their_ensemble(cross_validated):
    for k in (1, 2):
        assert (cross_validated / f"fold{k}" / "model.safetensors").is_file()
    model = load_pretrained(cross_validated)
    assert isinstance(model, Ensemble) and len(model.members) == 2
    training = model.config.training
    cv = training.cross_validation
    assert cv["folds"] == 2 and sum(f["n"] for f in cv["per_fold"]) == 18 == training.metrics["out_of_fold"]["n"]
    assert training.metrics["test"]["n"] == 6 and training.splits == {"train + validation": 18, "test": 6}
    assert 0 < model.config.threshold < 1 and model.config.ood and model.config.conformal
    assert "coverage" in training.trust["test"]
    card = (cross_validated / "README.md").read_text()
    assert "## Cross-validation" in card and "out-of-fold predictions" in card and "2 x cancer_cnn ensemble" in card


def test_ensemble_averages_its_members_probabilities(cross_validated):
    ensemble = load_pretrained(cross_validated)
    members = [load_pretrained(cross_validated / f"fold{k}") for k in (1, 2)]
    predictor = Predictor(ensemble)
    batch = predictor.preprocess(fixture_images())
    x = (batch.float() / 255 - torch.tensor(ensemble.config.mean)[:, None, None]) / torch.tensor(ensemble.config.std)[
        :, None, None
    ]
    with torch.no_grad():
        mean = torch.stack([m(x).softmax(dim=1) for m in members]).mean(dim=0)  # float32 members
        expected = (mean.log() / ensemble.config.temperature).softmax(dim=1)
    # The folder stores the members compressed (int8 weights): probabilities may move in the third decimal only,
    # and cross-validation recorded by how much on the test split.
    assert torch.allclose(predictor.probabilities(batch), expected, atol=5e-3)
    storage = ensemble.config.training.storage
    assert 0 < storage["largest_test_probability_change"] < 5e-3
    assert os.path.getsize(cross_validated / "model.safetensors") < 0.3 * 2 * os.path.getsize(
        cross_validated / "fold1" / "model.safetensors"
    )


def test_ensemble_predicts_explains_and_rejects_like_a_single_model(cross_validated):
    predictor = Predictor(load_pretrained(cross_validated))
    predictions = predictor.predict(fixture_images())
    assert all(p.ood_score is not None and p.prediction_set is not None for p in predictions)
    explanation = predictor.explain(fixture_images()[0])
    assert explanation.heatmap.shape == explanation.image.size[::-1] and explanation.heatmap.max() > 0
    layers = predictor.model.cam_target_layers()
    assert len(layers) == 2 and layers[0] is not layers[1]  # one map from both members


def test_calibrate_keeps_out_of_fold_trust_and_compare_scores_the_ensemble(cross_validated, tmp_path, capsys):
    before = load_pretrained(cross_validated).config
    assert cli_main(["calibrate", "--model", str(cross_validated), "--data", HISTO]) == 0
    after = load_pretrained(cross_validated).config
    assert after.conformal == before.conformal and after.ood == before.ood
    capsys.readouterr()
    out = tmp_path / "comparison"
    args = ["--data", HISTO, "--models", str(cross_validated / "fold1"), str(cross_validated), "--out", str(out)]
    assert cli_main(["compare", *args]) == 0
    report = json.loads((out / "comparison.json").read_text())
    assert report["n"] == 6 and len(report["models"]) == 2 and "difference" in report["models"][1]["auc_vs_first"]


def test_resume_skips_finished_folds_and_rebuilds_the_ensemble(cross_validated, capsys):
    fold_weights = cross_validated / "fold1" / "model.safetensors"
    stamp = fold_weights.stat().st_mtime_ns
    (cross_validated / "model.safetensors").unlink()
    args = ["--data", HISTO, "--output-dir", str(cross_validated), "--folds", "2", "--epochs", "2", "--resume", *FAST]
    assert cli_main(["train", *args]) == 0
    assert "epoch 1:" not in capsys.readouterr().out
    assert fold_weights.stat().st_mtime_ns == stamp
    assert isinstance(load_pretrained(cross_validated), Ensemble)


def test_ensembles_need_two_members_of_one_architecture(tmp_path):
    with pytest.raises(Exception, match="share architecture"):
        Ensemble.of([create_model("cancer_cnn", input_size=64), create_model("cancer_cnn", input_size=96)])
    ensemble = Ensemble.of([create_model("cancer_cnn", input_size=64) for _ in range(2)])
    save_model_folder(ensemble, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["model_args"]["members"] = 1
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(Exception, match="members"):
        load_pretrained(tmp_path)
    config["model_args"]["members"] = 3  # more members than the weights hold
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="missing"):
        load_pretrained(tmp_path)


def test_folds_option_is_checked_before_training(tmp_path, capsys):
    assert cli_main(["train", "--data", HISTO, "--output-dir", str(tmp_path), "--folds", "1"]) == 2
    assert "--folds" in capsys.readouterr().err


def test_cross_validation_measures_each_models_maps_on_the_lesions_it_did_not_train_on(tmp_path):
    images, masks = FIXTURES / "ultrasound", FIXTURES / "ultrasound_masks"
    args = ["--data", str(images), "--masks", str(masks), "--folds", "2", "--epochs", "1", *FAST[:6]]
    assert cli_main(["train", *args, "--output-dir", str(tmp_path), "--augment", "ultrasound"]) == 0
    model = load_pretrained(tmp_path)
    maps = model.config.training.cross_validation["out_of_fold_explanations"]
    # train + validation hold 12 images; one (normal_20) has an empty mask and is left out
    assert maps["n"] == 11 and maps["method"] == model.members[0].config.cam_method

    # the same measure taken by hand: fold k's model on fold k's held-out images
    pooled = pooled_for_folds(load_splits(DataSpec([str(images)], mask_dirs=[str(masks)])))
    paths = [Path(p["path"]) for p in pooled.cast_column("image", ImageFeature(decode=False))["image"]]
    heat = []
    for k, (_, held_out) in enumerate(fold_indices(pooled["target"], pooled["group"], 2, 0)):
        member = load_pretrained(tmp_path / f"fold{k + 1}")
        keep = [i for i in held_out if pooled["mask"][i]]
        report = explanation_quality(
            Predictor(member), [paths[i] for i in keep], [Path(pooled["mask"][i]) for i in keep], [maps["method"]]
        )
        heat.append((report["n"], report[maps["method"]]["heat_in_lesion"]["mean"]))
    expected = sum(n * h for n, h in heat) / sum(n for n, _ in heat)
    assert maps["heat_in_lesion"]["mean"] == pytest.approx(expected, abs=1e-6)
    assert "Out of fold, each fold's model's map" in (tmp_path / "README.md").read_text()


def test_folds_train_apart_and_a_final_resume_builds_their_ensemble(tmp_path, capsys):
    args = ["--data", HISTO, "--output-dir", str(tmp_path), "--folds", "2", "--epochs", "1", *FAST]
    assert cli_main(["train", *args, "--fold", "2"]) == 0
    assert (tmp_path / "fold2" / "model.safetensors").is_file()
    assert not (tmp_path / "fold1").exists() and not (tmp_path / "config.json").exists()
    assert cli_main(["train", *args, "--fold", "1"]) == 0
    capsys.readouterr()
    assert cli_main(["train", *args, "--resume"]) == 0
    assert "epoch 1:" not in capsys.readouterr().out  # both folds were done: only the ensemble is built
    assert len(load_pretrained(tmp_path).members) == 2
    assert cli_main(["train", *args, "--fold", "3"]) == 2
    assert "--fold 3" in capsys.readouterr().err


def test_the_ensemble_records_the_command_that_builds_it_not_one_folds():
    member = TrainingRecord(command="train.py --data 'my data' --folds 5 --fold 2 --resume --epochs 3", task="t")
    assert _shared_record(member, 5)["command"] == "train.py --data 'my data' --folds 5 --epochs 3"


def test_recipes_are_compared_out_of_fold_and_the_choice_recorded_in_the_card(cross_validated, tmp_path, capsys):
    model_dir = tmp_path / "model"
    shutil.copytree(cross_validated, model_dir)
    training = load_pretrained(cross_validated).config.training
    other = copy.deepcopy(training)
    other.settings = {**training.settings, "epochs": 5, "data": ["y"]}
    other.metrics["out_of_fold"]["auc"] = training.metrics["out_of_fold"]["auc"] - 0.1
    rows = [cross_validation_summary("longer", other), cross_validation_summary("shipped", training)]
    table = recipe_selection_table(rows)
    assert table.startswith("| run | epochs |") and "| shipped | 2 |" in table and "| longer | 5 |" in table
    assert table.index("| shipped") < table.index("| longer")  # best out-of-fold AUC first
    capsys.readouterr()
    assert cli_main(["recipes", str(cross_validated), "--record", str(model_dir)]) == 0
    printed = capsys.readouterr().out
    assert f"{training.metrics['out_of_fold']['auc']:.3f}" in printed and "test" not in printed.split("\n\n")[0]
    # The table is stored beside the model, for the documentation's experiments page; config and card stay as they were.
    config_before = (cross_validated / "config.json").read_text()
    assert (model_dir / "config.json").read_text() == config_before
    assert load_pretrained(model_dir).config.training.evaluations["recipe_selection"][0]["run"] == cross_validated.name


def test_calibrate_refuses_image_sets_for_an_ensemble_and_takes_its_test_figures_again(cross_validated, tmp_path):
    folder = tmp_path / "ensemble"
    shutil.copytree(cross_validated, folder)
    other = tmp_path / "look-alikes"
    shutil.copytree(FIXTURES / "histopathology" / "test", other / "test")
    assert cli_main(["calibrate", "--model", str(folder), "--data", HISTO, "--refuse", str(other)]) == 0
    model = load_pretrained(folder)
    assert set(model.config.ood.refused) == {"look-alikes"}
    assert not any(p.in_distribution for p in Predictor(model).predict(sorted(other.rglob("*.jpg"))))
    # the test split is those same tiles: all refused now, and the card's trust figures say so
    test = model.config.training.trust["test"]
    assert (test["n"], test["rejected"]) == (6, 1.0) and "coverage" not in test
    assert all(part["rejected"] == 1.0 for part in test["per_collection"].values())


def test_calibrate_refuses_an_ensemble_whose_data_has_grown_since_training(cross_validated, tmp_path, capsys):
    # Images added to train + validation since would fall in folds whose members trained on them.
    data = tmp_path / "grown"
    shutil.copytree(FIXTURES / "histopathology", data)
    shutil.copy(data / "train" / "benign" / "colonn270.jpg", data / "train" / "benign" / "added.jpg")
    with open(data / "train" / "metadata.csv", "a") as metadata:
        metadata.write("benign/added.jpg,benign,added:1,colon_n,LC25000 colon (Borkowski et al. 2019)\n")
    config_before = (cross_validated / "config.json").read_text()
    assert cli_main(["calibrate", "--model", str(cross_validated), "--data", str(data)]) == 2
    assert "cannot be calibrated out of fold on this data" in capsys.readouterr().err
    assert (cross_validated / "config.json").read_text() == config_before
