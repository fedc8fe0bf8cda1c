"""Model comparison on real images: per-model metrics with intervals and a paired AUC difference."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES

from cancer_models import load_pretrained
from cancer_models.cli import main as cli_main
from cancer_models.evaluation.compare import paired_auc_difference
from cancer_models.evaluation.evaluate import evaluate
from cancer_models.evaluation.metrics import rank_auc
from cancer_models.reporting.model_folder import save_model_folder

ROOT = Path(__file__).resolve().parents[1]


def test_paired_difference_is_zero_for_one_model_and_clear_for_a_better_one():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 60)
    groups = [f"g{i // 2}" for i in range(120)]  # pairs of near-copies
    weak = y * 0.3 + rng.random(120)
    same = paired_auc_difference(y, weak, weak, groups)
    assert same["difference"] == 0 and same["ci"] == [0, 0] and same["p_value"] == 1.0
    strong = y * 2.0 + rng.random(120)
    better = paired_auc_difference(y, weak, strong, groups)
    assert better["difference"] == pytest.approx(rank_auc(y, strong) - rank_auc(y, weak))
    assert better["ci"][0] > 0 and better["p_value"] < 0.01


def test_compare_cli_scores_every_model_on_the_same_images(tmp_path, capsys, small_cnn):
    save_model_folder(small_cnn, tmp_path / "small")
    shipped = str(ROOT / "models" / "histopathology-cancer-cnn")
    args = ["--data", str(FIXTURES / "histopathology"), "--models", shipped, str(tmp_path / "small"), shipped]
    assert cli_main(["compare", *args, "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out.strip().splitlines()[-1])
    assert report["split"] == "test" and report["n"] == 6 and len(report["models"]) == 3
    first, _, again = report["models"]
    assert again["auc_vs_first"]["difference"] == 0 and again["auc"] == first["auc"]
    assert "| model | AUC | sensitivity |" in captured.err
    # the same within each lab or clinic of the images: LC25000's colon and lung tiles, 3 each
    per_collection = report["per_collection"]
    assert sorted(per_collection) == ["LC25000 colon (Borkowski et al. 2019)", "LC25000 lung (Borkowski et al. 2019)"]
    evaluated = evaluate(small_cnn, str(FIXTURES / "histopathology"), "test").metrics["per_collection"]
    for name, part in per_collection.items():
        first, small, again = part["models"]
        assert part["n"] == 3 and small["auc"] == pytest.approx(evaluated[name]["auc"])
        assert again["auc_vs_first"]["difference"] == 0 and "auc_vs_first" not in first
    assert "| LC25000 lung (Borkowski et al. 2019) | 3 |" in captured.err
    assert (tmp_path / "out" / "comparison.md").read_text().startswith("Data: ")
    assert cli_main(["compare", "--data", str(FIXTURES / "histopathology"), "--models", shipped]) == 2
    assert "at least two models" in capsys.readouterr().err


def test_compare_scores_several_image_sets_together(small_cnn, tmp_path):
    from cancer_models.evaluation.compare import compare

    save_model_folder(small_cnn, tmp_path / "small")
    shipped = str(ROOT / "models" / "histopathology-cancer-cnn")
    sources = [str(FIXTURES / "histopathology"), str(FIXTURES / "dermoscopy")]
    report = compare([shipped, str(tmp_path / "small")], sources)
    parts = [evaluate(small_cnn, s, "test").images for s in sources]
    y = [t for scored in parts for t in scored.targets]
    p = [v for scored in parts for v in scored.p_malignant]
    assert report["n"] == len(y) == 10 and report["data"] == "histopathology + dermoscopy"
    assert report["models"][1]["auc"] == pytest.approx(rank_auc(np.array(y), np.array(p)))
    assert report["models"][1]["auc_vs_first"]["resamples"] > 0


def test_a_recorded_comparison_is_in_the_first_models_card(small_cnn, tmp_path, capsys):
    save_model_folder(small_cnn, tmp_path / "small")
    shipped = str(ROOT / "models" / "histopathology-cancer-cnn")
    args = ["--data", str(FIXTURES / "histopathology"), "--models", str(tmp_path / "small"), shipped]
    assert cli_main(["compare", *args, "--names", "new", "shipped", "--record"]) == 0
    recorded = load_pretrained(tmp_path / "small").config.training.evaluations["comparison"]
    assert [row["model"] for row in recorded["models"]] == ["new", "shipped"]
    card = (tmp_path / "small" / "README.md").read_text()
    assert "## Compared with other models (same images)" in card and "| shipped |" in card
    assert str(tmp_path) not in card and "/models/" not in card
    assert cli_main(["compare", *args, "--names", "just one"]) == 2
    assert "2 models" in capsys.readouterr().err
