"""Acquisition shifts on real tiles: each does what its name says, and evaluate re-scores a split under them."""

import json

import numpy as np
import pytest
from conftest import FIXTURES, fixture_images
from PIL import Image

from cancer_models.cli import main as cli_main
from cancer_models.data.augment import RGB_FROM_HED
from cancer_models.data.images import load_image
from cancer_models.evaluation.robustness import SHIFTS, jpeg, restain, zoom
from cancer_models.reporting.model_folder import save_model_folder


@pytest.fixture(scope="module")
def tile() -> Image.Image:
    return load_image(fixture_images()[0]).resize((96, 96))


def test_zoom_in_magnifies_the_centre_and_zoom_out_shrinks_the_whole(tile):
    assert zoom(tile, 2.0).size == zoom(tile, 0.5).size == tile.size
    assert np.array_equal(
        np.asarray(zoom(tile, 2.0)), np.asarray(tile.crop((24, 24, 72, 72)).resize((96, 96), Image.BILINEAR))
    )
    shrunk = np.asarray(tile.resize((48, 48), Image.BILINEAR))
    assert np.array_equal(np.asarray(zoom(tile, 0.5))[24:72, 24:72], shrunk)


def test_restaining_scales_one_stain_and_keeps_the_others(tile):
    def stains(image: Image.Image) -> np.ndarray:
        density = -np.log(np.clip(np.asarray(image, dtype=np.float64) / 255, 1e-6, 1))
        return (density @ np.linalg.inv(RGB_FROM_HED.double().numpy())).reshape(-1, 3)

    same = np.asarray(restain(tile, 1.0, 1.0)).astype(int)
    assert np.abs(same - np.asarray(tile)).max() <= 1
    before, after = stains(tile), stains(restain(tile, 1.3, 1.0))
    clean = (np.asarray(tile).reshape(-1, 3) > 20).all(1) & (
        np.asarray(restain(tile, 1.3, 1.0)).reshape(-1, 3) > 20
    ).all(1)
    ratio = after[clean, 0].sum() / before[clean, 0].sum()
    assert ratio == pytest.approx(1.3, rel=0.05) and after[clean, 1].sum() == pytest.approx(
        before[clean, 1].sum(), rel=0.05
    )


def test_every_shift_keeps_size_and_mode_and_changes_the_image(tile):
    for name, shift in SHIFTS.items():
        out = shift(tile)
        assert out.size == tile.size and out.mode == "RGB", name
        assert (name == "none") == np.array_equal(np.asarray(out), np.asarray(tile)), name
    assert np.abs(np.asarray(jpeg(tile, 10), dtype=int) - np.asarray(tile)).mean() > 1


def test_evaluate_reports_each_shift(small_cnn, tmp_path, capsys):
    save_model_folder(small_cnn, tmp_path / "model")
    args = ["--model", str(tmp_path / "model"), "--data", str(FIXTURES / "histopathology")]
    assert cli_main(["evaluate", *args, "--shifts", "none,zoom in 2x,stain: more eosin"]) == 0
    captured = capsys.readouterr()
    metrics = json.loads(captured.out.strip().splitlines()[-1])
    assert list(metrics["shifts"]) == ["none", "zoom in 2x", "stain: more eosin"]
    assert metrics["shifts"]["none"]["auc"] == pytest.approx(metrics["auc"])
    assert metrics["shifts"]["none"]["sensitivity"] == pytest.approx(metrics["sensitivity"])
    assert "  zoom in 2x: auc " in captured.err
    assert cli_main(["evaluate", *args, "--shifts", "rotate"]) == 2
    assert "unknown shift" in capsys.readouterr().err
