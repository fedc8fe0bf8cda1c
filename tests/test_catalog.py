import json
import threading

import pytest

from cancer_models import ConfigError
from cancer_models.reporting.model_folder import save_model_folder
from catalog import CATALOG_ENV, DEFAULT_CATALOG, ModelStore, load_catalog


def write(tmp_path, entries) -> str:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(entries))
    return str(path)


def test_local_dirs_are_relative_to_the_catalog(tmp_path):
    entries = load_catalog(write(tmp_path, [{"name": "A", "modality": "histopathology", "local_dir": "models/a"}]))
    assert entries[0].local_dir == str(tmp_path / "models" / "a")


def test_environment_variable_names_the_catalog(tmp_path, monkeypatch):
    monkeypatch.setenv(CATALOG_ENV, write(tmp_path, [{"name": "From env", "repo_id": "org/model"}]))
    assert [e.name for e in load_catalog()] == ["From env"]


def test_the_shipped_catalog_points_at_shipped_models():
    for entry in load_catalog(DEFAULT_CATALOG):
        assert entry.local_dir, f"{entry.name} has no bundled folder: the app would need the network"
        assert (DEFAULT_CATALOG.parent / entry.local_dir / "model.safetensors").is_file(), entry.name


@pytest.mark.parametrize(
    "entries, message",
    [
        ([], "non-empty"),
        ([{"modality": "x", "local_dir": "a"}], "needs at least a 'name'"),
        ([{"name": "A"}], "'repo_id', a 'local_dir' or both"),
        ([{"name": "A", "local_dir": "a", "weights": "x"}], "unknown keys"),
        ([{"name": "A", "local_dir": "a"}, {"name": "A", "local_dir": "b"}], "unique"),
    ],
)
def test_bad_catalogs(tmp_path, entries, message):
    with pytest.raises(ConfigError, match=message):
        load_catalog(write(tmp_path, entries))


def test_missing_or_malformed_catalog_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_catalog(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_catalog(tmp_path / "bad.json")


def test_store_loads_once_and_falls_back_to_the_local_folder(tmp_path, small_cnn):
    save_model_folder(small_cnn, tmp_path / "m")
    entries = load_catalog(
        write(
            tmp_path,
            [{"name": "A", "modality": "histopathology", "repo_id": "cancer-models/not-published", "local_dir": "m"}],
        )
    )
    store = ModelStore(entries)
    results = []
    threads = [threading.Thread(target=lambda: results.append(store.get("A"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is results[0] for r in results), "each model is loaded once and shared"
    assert results[0].source.startswith("bundled folder m; the Hub copy was unavailable")
    with pytest.raises(KeyError, match="unknown model 'B'"):
        store.get("B")
