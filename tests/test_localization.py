"""The explanation-quality measurement: does the map's peak, and its heat, fall on the lesion?"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES
from PIL import Image

from cancer_models.cli import main as cli_main
from cancer_models.evaluation.localization import centre_prior, point_scores

ROOT = Path(__file__).resolve().parents[1]
ULTRASOUND, MASKS = FIXTURES / "ultrasound", FIXTURES / "ultrasound_masks"


def test_a_map_on_the_lesion_scores_one_and_a_map_beside_it_zero():
    mask = np.zeros((40, 40), bool)
    mask[5:15, 5:15] = True
    assert point_scores(mask.astype(np.float32), mask) == {"peak_in_lesion": 1.0, "heat_in_lesion": 1.0}
    assert point_scores((~mask).astype(np.float32) * np.linspace(0, 1, 40), mask)["peak_in_lesion"] == 0.0
    prior = centre_prior(40, 40)
    assert np.unravel_index(prior.argmax(), prior.shape) in {(19, 19), (19, 20), (20, 19), (20, 20)}


def test_evaluate_with_masks_reports_every_method_and_the_centre_prior(capsys):
    args = ["--model", str(ROOT / "models" / "ultrasound-cancer-cnn"), "--data", str(ULTRASOUND)]
    assert cli_main(["evaluate", *args, "--masks", str(MASKS), "--cam-methods", "gradcam,layercam"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["explanations"]
    shares = [(np.asarray(Image.open(p)) > 127).mean() for p in sorted((MASKS / "test").rglob("*.png"))]
    assert report["n"] == 3 and report["without_lesion"] == 1  # normal_35 has no lesion
    assert report["lesion_share"]["mean"] == pytest.approx(np.mean([s for s in shares if s > 0]))
    for name in ("gradcam", "layercam", "centre prior"):
        for key in ("peak_in_lesion", "heat_in_lesion"):
            low, high = report[name][key]["ci"]
            assert 0 <= low <= report[name][key]["mean"] <= high <= 1


def test_images_without_a_mask_file_are_counted_and_no_mask_at_all_is_a_clear_error(tmp_path, capsys):
    shutil.copytree(MASKS, tmp_path / "masks")
    next((tmp_path / "masks").rglob("malignant_11.png")).unlink()
    args = ["--model", str(ROOT / "models" / "ultrasound-cancer-cnn"), "--data", str(ULTRASOUND)]
    assert cli_main(["evaluate", *args, "--masks", str(tmp_path / "masks"), "--cam-methods", "gradcam"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["explanations"]
    assert report["without_mask_file"] == 1 and report["n"] == 2 and report["without_lesion"] == 1
    empty = tmp_path / "no-masks"
    empty.mkdir()
    assert cli_main(["evaluate", *args, "--masks", str(empty)]) == 2
    assert "none of the 4 images of the scored split has a mask file" in capsys.readouterr().err


def test_a_model_trained_with_a_mask_loss_keeps_its_layers_and_only_the_method_is_chosen(small_cnn):
    from cancer_models.evaluation.localization import CANDIDATE_METHODS, choose_cam, images_with_masks

    small_cnn.config.training.settings.update(mask_loss=1.0, cam_layers=["stage3.1"])  # as train.py records them
    small_cnn.config.cam_layers = ["stage3.1"]
    images, masks = images_with_masks(ULTRASOUND, MASKS, "validation")
    rows = choose_cam(small_cnn, images, masks)
    assert [r["layers"] for r in rows] == [["stage3.1"]] * len(CANDIDATE_METHODS)
    assert {r["method"] for r in rows} == set(CANDIDATE_METHODS) and small_cnn.config.cam_layers == ["stage3.1"]
    small_cnn.config.training.settings["mask_loss"] = 0.0  # without one, every candidate layer is measured
    rows = choose_cam(small_cnn, images, masks, methods=("gradcam",))
    assert len(rows) == len(small_cnn.cam_layer_candidates()) > 1
