"""The `cancer-models` command as a user runs it: real images, shipped models, exit codes and messages."""

import csv
import io
import subprocess
import sys
from pathlib import Path

from conftest import FIXTURES, fixture_images

from cancer_models.cli import main

ROOT = Path(__file__).resolve().parents[1]
MODELS = [str(ROOT / "models" / f"{task}-cancer-cnn") for task in ("histopathology", "dermoscopy", "ultrasound")]


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_predict_routes_each_image_to_its_model_and_reports_an_unreadable_file(tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    images = [fixture_images("histopathology")[0], fixture_images("ultrasound")[0], broken]
    assert main(["predict", *map(str, images), "--model", *MODELS]) == 2  # one file failed
    out = rows(capsys.readouterr().out)
    assert [r["model"] for r in out[:2]] == ["histopathology-cancer-cnn", "ultrasound-cancer-cnn"]
    assert all(r["decision"] in ("benign", "malignant", "uncertain") and r["p_malignant"] for r in out[:2])
    assert [r["file"] for r in out] == list(map(str, images))  # as given, not only the base name
    assert out[2]["error"] and not out[2]["decision"]


def test_a_refused_image_gets_no_probability(capsys):
    photo = FIXTURES.parent.parent / "examples" / "dermoscopy_benign_isic109.jpg"  # not histopathology
    assert main(["predict", str(photo), "--model", MODELS[0]]) == 0
    (row,) = rows(capsys.readouterr().out)
    assert row["decision"] == "not recognised" and row["p_malignant"] == row["threshold"] == row["prediction_set"] == ""
    assert float(row["unusualness"]) > 1


def test_an_image_no_model_recognises_is_answered_by_none(capsys):
    skin = FIXTURES.parent.parent / "examples" / "dermoscopy_benign_isic109.jpg"
    assert main(["predict", str(skin), "--model", MODELS[0], MODELS[2]]) == 0  # histopathology and ultrasound
    (row,) = rows(capsys.readouterr().out)
    assert row["model"].startswith("none (closest: ") and row["decision"] == "not recognised"


def test_a_missing_model_is_one_error_line_and_exit_code_2(tmp_path, capsys):
    assert main(["predict", str(fixture_images()[0]), "--model", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "nowhere" in err[0]


def test_help_says_only_defaults_that_exist():
    from cancer_models.cli.main import build_parser

    subcommands = build_parser()._subparsers._group_actions[0].choices
    for name, parser in subcommands.items():
        text = parser.format_help()
        assert "default: None" not in text and "(default: )" not in text and "default: False" not in text, name
    assert "(default: 0.0)" in subcommands["slides"].format_help()  # a zero is a default worth saying


def test_python_m_cancer_models_is_the_command():
    result = subprocess.run(
        [sys.executable, "-m", "cancer_models", "--help"], capture_output=True, text=True, timeout=120, check=True
    )
    assert "predict" in result.stdout and "calibrate" in result.stdout and "push" in result.stdout
