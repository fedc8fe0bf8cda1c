"""Settings are typed: a folder in today's layout or an older one loads into the same trust settings and
hardware fields, saves in today's layout, and refuses and answers exactly as before."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from conftest import fixture_images

from cancer_models import ConfigError, Predictor, load_pretrained
from cancer_models.config import FORMAT_VERSION, ModelConfig
from cancer_models.record import Hardware
from cancer_models.reporting.model_folder import save_model_folder
from cancer_models.settings import ConformalSettings, TileSpec, TrustSettings

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "models").glob("*/config.json"))
OLD_NAMES = {"thresholds", "image_threshold", "domain_threshold", "thresholds_before_refusal", "threshold"}


@pytest.mark.parametrize("config_file", SHIPPED, ids=lambda p: p.parent.name)
def test_a_shipped_folder_in_the_first_layout_loads_and_resaves_in_todays(config_file, tmp_path):
    stored = json.loads(config_file.read_text())
    config = ModelConfig.from_dict(stored)
    ood, old = config.ood, stored["ood"]
    if stored["format_version"] == 1:  # written before the settings had names
        assert ood.layer_limits == old["thresholds"] and ood.image_limit == old["image_threshold"]
        assert ood.domain_limit == old["domain_threshold"]
        assert ood.layer_limits_before_refusal == old["thresholds_before_refusal"]
    assert ood.refused == old["refused"] and config.conformal.qhat_tta == stored["conformal"]["qhat_tta"]
    saved = config.to_dict()
    assert saved["format_version"] == FORMAT_VERSION and not OLD_NAMES & set(saved["ood"])
    assert ModelConfig.from_dict(json.loads(json.dumps(saved))) == config


def test_a_resaved_folder_refuses_and_answers_as_the_shipped_one(tmp_path):
    shipped = ROOT / "models" / "histopathology-cancer-cnn"
    copy = tmp_path / "model"
    shutil.copytree(shipped, copy)
    save_model_folder(load_pretrained(copy), copy)
    assert "layer_limits" in json.loads((copy / "config.json").read_text())["ood"]
    images = fixture_images("histopathology", "test") + fixture_images("dermoscopy", "test")
    before, after = (Predictor(load_pretrained(folder)).predict(images) for folder in (shipped, copy))
    for a, b in zip(before, after, strict=True):
        assert a.ood_score == pytest.approx(b.ood_score, rel=1e-6) and a.decision == b.decision
        assert a.prediction_set == b.prediction_set
    assert any(p.decision == "not recognised" for p in before) and any(p.label for p in before)


def test_the_first_layout_of_all_one_limit_on_one_layer_is_read():
    ood = TrustSettings.from_dict({"method": "mahalanobis", "threshold": 12.5, "acceptance": 0.99})
    assert ood.layer_limits == [12.5] and ood.limits() == [12.5] and ood.image_limit is None


@pytest.mark.parametrize(
    ("ood", "conformal", "named"),
    [
        ({"thresholds": [-1.0]}, None, "ood.layer_limits"),
        ({"thresholds": [1.0], "image_threshold": "high"}, None, "ood.image_limit"),
        ({"thresholds": [1.0], "colour_floor": -0.1}, None, "ood.colour_floor"),
        ({"thresholds": [1.0], "over": "patients"}, None, "ood.over"),
        ({"thresholds": [1.0], "layers_over_collections": "GlaS"}, None, "ood.layers_over_collections"),
        ({"thresholds": [1.0], "limit": 3}, None, "unknown keys"),
        ({"acceptance": 0.99}, None, "layer limits"),
        (None, {"alpha": 1.5, "qhat": 0.5}, "conformal.alpha"),
        (None, {"alpha": 0.1}, "alpha and qhat"),
        ("strict", None, "'ood'"),
    ],
)
def test_a_bad_setting_is_refused_with_its_name(ood, conformal, named):
    with pytest.raises(ConfigError, match=named):
        ModelConfig(architecture="cancer_cnn", ood=ood, conformal=conformal)


def test_the_prediction_set_quantile_follows_the_views():
    sets = ConformalSettings(alpha=0.1, qhat=0.6, qhat_tta=0.55)
    assert (sets.quantile(tta=False), sets.quantile(tta=True), sets.level) == (0.6, 0.55, pytest.approx(0.9))
    assert ConformalSettings(alpha=0.1, qhat=0.6).quantile(tta=True) == 0.6


@pytest.mark.parametrize("config_file", SHIPPED, ids=lambda p: p.parent.name)
def test_the_hardware_sentence_of_older_records_becomes_fields_that_say_the_same(config_file):
    written = json.loads(config_file.read_text())["training"]["provenance"]["hardware"]
    hardware = ModelConfig.from_dict(json.loads(config_file.read_text())).training.provenance.hardware
    if written is None:
        assert hardware is None
        return
    assert str(hardware) == written if isinstance(written, str) else hardware == Hardware(**written)
    assert hardware.kind == ("GPU" if "NVIDIA" in str(hardware) else "CPU")
    assert Hardware.from_value(dataclasses.asdict(hardware)) == hardware


def test_hardware_is_written_as_fields():
    assert str(Hardware("cpu", 1, threads=2)) == "1 process(es) on CPU, 2 thread(s) each"
    assert str(Hardware("cuda", 2, "NVIDIA H100 80GB HBM3")) == "2 x NVIDIA H100 80GB HBM3"
    with pytest.raises(ConfigError, match="hardware"):
        Hardware.from_value(3)


def test_tile_scale_is_one_object_and_older_loose_fields_are_read_into_it():
    config = ModelConfig.from_dict({"architecture": "cancer_cnn", "tile_size": 160, "tile_mpp": 1.25})
    assert config.tile == TileSpec(160, 1.25) and "tile_size" not in config.to_dict()
    assert ModelConfig.from_dict({"architecture": "cancer_cnn", "tile_size": 160}).tile == TileSpec(160)
    assert TileSpec(160, 1.25).pixels_at(0.25) == 800 and TileSpec(160, 1.25).pixels_at(None) == 160
    assert TileSpec(160).pixels_at(0.25) == 160 and TileSpec(160, 1.25).microns == 200
    with pytest.raises(ConfigError, match="tile.mpp"):
        ModelConfig(architecture="cancer_cnn", tile={"size": 160, "mpp": -1})
