"""The training record: typed, versioned, read back from the untyped records older model folders carry."""

import json
import shutil
from pathlib import Path

import pytest

from cancer_models import ConfigError, load_pretrained
from cancer_models.record import SCHEMA_VERSION, TrainingRecord
from cancer_models.reporting.model_folder import save_model_folder
from cancer_models.sources import display_name, is_hub_id

ROOT = Path(__file__).resolve().parents[1]
# A record as versions before the schema wrote it: data as one string, the analyses inside, the package keyed
# by its distribution name.
VERSION_1 = {
    "task": "histopathology",
    "data": "../data/histopathology, /home/me/extra",
    "provenance": {"cancer-models": "0.1.0", "git_commit": "abc", "torch": "2.14.1", "weights": "float16 copy"},
    "metrics": {"test": {"n": 6, "auc": 1.0}},
    "comparison": {"models": [{"model": "a"}]},
    "cam_choice": [{"layers": ["stage3"], "method": "gradcam"}],
    "explanations": {"method": "gradcam", "tried": ["a note"]},
}


def test_a_version_1_record_is_read_into_the_typed_record():
    record = TrainingRecord.from_dict(VERSION_1)
    assert record.data == ["../data/histopathology", "/home/me/extra"]
    assert record.provenance.package_version == "0.1.0" and record.provenance.note == "float16 copy"
    assert set(record.evaluations) == {"comparison", "cam_choice"}  # analyses leave the config
    stored = record.to_dict()
    assert stored["schema_version"] == SCHEMA_VERSION and "comparison" not in stored and "evaluations" not in stored
    assert TrainingRecord.from_dict(stored).data == record.data  # and the new form reads back as itself


def test_records_from_a_newer_library_or_with_unknown_keys_are_refused_by_name():
    with pytest.raises(ConfigError, match="schema version 99"):
        TrainingRecord.from_dict({"schema_version": 99})
    with pytest.raises(ConfigError, match="unknown keys: epohcs"):
        TrainingRecord.from_dict({"epohcs": 3})
    with pytest.raises(ConfigError, match="must be an object"):
        TrainingRecord.from_dict(["not", "a", "record"])


def test_a_shipped_folder_written_the_old_way_loads_and_saves_back_to_the_same_files(tmp_path):
    shipped = ROOT / "models" / "histopathology-cancer-cnn"
    folder = tmp_path / "old"
    shutil.copytree(shipped, folder)
    # The version-1 layout: no schema version, data as one string, the analyses inside the record.
    config = json.loads((folder / "config.json").read_text())
    training = {k: v for k, v in config["training"].items() if k != "schema_version"}
    training["data"] = ", ".join(training["data"])
    config["training"] = {**training, **json.loads((folder / "evaluations.json").read_text())}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "evaluations.json").unlink()
    model = load_pretrained(folder)
    assert model.config.training.data == ["../shared/data/histopathology", "../shared/data/histopathology_glas"]
    assert "robustness" in model.config.training.evaluations
    save_model_folder(model, folder)
    for name in ("config.json", "evaluations.json", "README.md"):
        assert (folder / name).read_text() == (shipped / name).read_text(), name


@pytest.mark.parametrize(
    ("source", "hub"),
    [
        ("owner/name", True),
        ("name", True),
        ("./name", False),
        ("/abs/path", False),
        ("~/data", False),
        ("a/b/c", False),
        ("back\\slash", False),
        ("", False),
    ],
)
def test_one_rule_tells_a_hub_id_from_a_local_path(source, hub):
    assert is_hub_id(source) is hub


def test_an_existing_folder_is_local_whatever_its_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner" / "name").mkdir(parents=True)
    assert not is_hub_id("owner/name") and not is_hub_id(Path("anything"))
    assert display_name("owner/name") == "name"  # a local path is named by its last part, never in full
    assert display_name("someone/set") == "someone/set"
