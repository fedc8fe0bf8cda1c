"""ONNX export: every shipped architecture (the ensembles as one graph) matches PyTorch under onnxruntime."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import fixture_images

from cancer_models import Predictor, create_model, load_pretrained
from cancer_models.cli import main as cli_main
from cancer_models.reporting.model_folder import save_model_folder

onnxruntime = pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parents[1]


def _run(path: Path, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probs, features = session.run(["probabilities", "features"], {"image": batch})
    return probs, features, session.get_modelmeta().custom_metadata_map


@pytest.mark.parametrize("folder", ["histopathology-cancer-cnn", "ultrasound-cancer-cnn", "dermoscopy-cancer-cnn"])
def test_shipped_models_match_pytorch_under_onnxruntime(folder, tmp_path):
    out = tmp_path / f"{folder}.onnx"
    assert cli_main(["export", "--model", str(ROOT / "models" / folder), "--format", "onnx", "--out", str(out)]) == 0
    model = load_pretrained(ROOT / "models" / folder)
    predictor = Predictor(model)
    images = [p for task in ("histopathology", "dermoscopy", "ultrasound") for p in fixture_images(task, "test")]
    batch = predictor.preprocess(images)  # uint8 at the input size: what the graph takes, as float
    expected = predictor.probabilities(batch, tta=False).numpy()
    probs, features, meta = _run(out, batch.float().numpy())
    assert probs.shape == (len(images), 2) and np.abs(probs - expected).max() < 1e-4
    assert features.shape[0] == len(images)
    assert json.loads(meta["labels"]) == list(model.config.labels)
    assert json.loads(meta["threshold"]) == model.config.threshold and json.loads(meta["input"])["size"] == 128
    one, _, _ = _run(out, batch[:1].float().numpy())  # dynamic batch
    assert np.abs(one - expected[:1]).max() < 1e-4


@pytest.mark.parametrize("architecture", ["resnet34", "efficientnet_b0"])
def test_other_architectures_export_too(architecture, tmp_path):
    torch.manual_seed(0)
    model = create_model(architecture, input_size=64).eval()
    save_model_folder(model, tmp_path / "model")
    out = tmp_path / "model.onnx"
    assert cli_main(["export", "--model", str(tmp_path / "model"), "--out", str(out)]) == 0
    batch = Predictor(model).preprocess(fixture_images()[:3])
    probs, _, _ = _run(out, batch.float().numpy())
    assert np.abs(probs - Predictor(model).probabilities(batch, tta=False).numpy()).max() < 1e-4


def test_a_missing_model_is_a_clear_error(tmp_path, capsys):
    assert cli_main(["export", "--model", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "error:" in capsys.readouterr().err
