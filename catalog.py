"""The app's model catalog: which models it offers and where their weights come from (the Hub when reachable,
else a bundled folder), and the store that loads each one once.

The catalog is a small JSON file (``app_models.json`` by default; the environment variable
``CANCER_MODELS_CATALOG`` names another): a list of entries with a readable ``name``, a ``modality``,
and a Hub ``repo_id`` (optionally ``revision``), a ``local_dir`` (relative to the catalog file), or both.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

import torch
from huggingface_hub import constants as hf_constants

from cancer_models import CheckpointError, ConfigError, Predictor, load_pretrained

CATALOG_ENV = "CANCER_MODELS_CATALOG"
DEFAULT_CATALOG = Path(__file__).resolve().parent / "app_models.json"


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    modality: str = ""
    repo_id: str | None = None
    revision: str | None = None
    local_dir: str | None = None


@dataclass(frozen=True)
class LoadedModel:
    entry: CatalogEntry
    predictor: Predictor
    source: str  # where the weights came from, in words


def load_catalog(path: str | Path | None = None) -> list[CatalogEntry]:
    """Read and check a catalog file; ``local_dir`` paths come back absolute."""
    path = Path(path or os.environ.get(CATALOG_ENV) or DEFAULT_CATALOG)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"model catalog {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"model catalog {path} is not valid JSON: {e}") from None
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"model catalog {path} must be a non-empty JSON list of entries")
    known = {f.name for f in fields(CatalogEntry)}
    entries = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not item.get("name"):
            raise ConfigError(f"model catalog {path}, entry {i}: needs at least a 'name'")
        unknown = set(item) - known
        if unknown:
            raise ConfigError(f"model catalog {path}, entry {item['name']!r}: unknown keys {sorted(unknown)}")
        if not item.get("repo_id") and not item.get("local_dir"):
            raise ConfigError(f"model catalog {path}, entry {item['name']!r}: give a 'repo_id', a 'local_dir' or both")
        if item.get("local_dir"):
            item = {**item, "local_dir": str((path.parent / item["local_dir"]).resolve())}
        entries.append(CatalogEntry(**item))
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ConfigError(f"model catalog {path}: model names must be unique")
    return entries


@cache
def hub_reachable(timeout: float = 2.0) -> bool:
    """One quick TCP connection to the Hub endpoint, once per process.

    Without it, every uncached model on an offline machine would wait out huggingface_hub's retries
    (over 20 s) before falling back to its bundled folder.
    """
    if hf_constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(hf_constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
        return True
    except OSError:
        return False


class ModelStore:
    """Loads each catalog model once per process, on first use, and shares it between requests."""

    def __init__(self, entries: list[CatalogEntry], device: str | None = None) -> None:
        self.entries = {e.name: e for e in entries}
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._models: dict[str, LoadedModel] = {}
        self._locks = {name: threading.Lock() for name in self.entries}

    @property
    def names(self) -> list[str]:
        return list(self.entries)

    def get(self, name: str) -> LoadedModel:
        if name not in self.entries:
            raise KeyError(f"unknown model {name!r}; available: {', '.join(self.entries)}")
        with self._locks[name]:  # concurrent first requests wait for one load instead of starting several
            if name not in self._models:
                self._models[name] = self._load(self.entries[name])
            return self._models[name]

    def warm_up(self, image: Path) -> None:
        """Load every model and explain ``image`` with it once, first model first, so that no request waits for
        weights, grad-cam's import or first-call allocations. A model that cannot load is skipped here: asking
        for it reports why."""
        for name in self.names:
            try:
                self.get(name).predictor.explain(image)
            except (CheckpointError, ConfigError, OSError):
                continue

    def _load(self, entry: CatalogEntry) -> LoadedModel:
        hub_problem = None
        if entry.repo_id:
            try:
                # Offline, a copy already in the Hugging Face cache is still used.
                model = load_pretrained(
                    entry.repo_id, revision=entry.revision, device=self.device, local_files_only=not hub_reachable()
                )
                where = f"{entry.repo_id}@{entry.revision}" if entry.revision else entry.repo_id
                return LoadedModel(entry, Predictor(model), f"Hugging Face Hub ({where})")
            except (CheckpointError, ConfigError, OSError) as e:
                hub_problem = str(e)
        if entry.local_dir:
            model = load_pretrained(entry.local_dir, device=self.device)
            note = f"; the Hub copy was unavailable: {hub_problem}" if hub_problem else ""
            return LoadedModel(entry, Predictor(model), f"bundled folder {Path(entry.local_dir).name}{note}")
        raise CheckpointError(f"model {entry.name!r} could not be loaded from the Hub: {hub_problem}")
