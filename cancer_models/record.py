"""The training record: what a model was trained on, how, what it scored and what fitted its trust, stored as
``config.json``'s ``training`` object.

Analyses run later against a finished model (comparisons with other models, acquisition-shift tables, the
cross-validated recipe table, the CAM layer search) are not part of it: they live in ``evaluations.json``
beside the model (``TrainingRecord.evaluations``), so re-running an analysis never rewrites the config.

Records written before the schema had a version (a plain object with ``data`` as one comma-joined string and
the analyses inside) are read as version 1 and converted on load.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

SCHEMA_VERSION = 2
EVALUATIONS_NAME = "evaluations.json"
# Analyses that live in evaluations.json; a record that carries one inside (as version 1 did) has it moved out.
EVALUATION_KEYS = ("comparison", "robustness", "recipe_selection", "cam_choice", "foreign_images", "left_out")


@dataclass
class Hardware:
    """The machine a model trained on.

    Args:
        device: the torch device type: "cpu", "cuda" or "mps".
        processes: training processes (one per accelerator with ``accelerate launch``).
        name: the accelerator's name (``torch.cuda.get_device_name``); empty on a CPU.
        threads: CPU threads per process, where it trained on a CPU.
    """

    device: str = "cpu"
    processes: int = 1
    name: str = ""
    threads: int | None = None

    def __str__(self) -> str:
        if self.device == "cpu":
            threads = f", {self.threads} thread(s) each" if self.threads else ""
            return f"{self.processes} process(es) on CPU{threads}"
        return f"{self.processes} x {self.name or self.device.upper()}"

    @property
    def kind(self) -> str:
        """ "CPU" or "GPU": what a recipe table compares."""
        return "CPU" if self.device == "cpu" else "GPU"

    @classmethod
    def from_value(cls, value: Any) -> Hardware | None:
        """The record's ``hardware``: an object, or the sentence written before it had fields (converted)."""
        if value is None or isinstance(value, Hardware):
            return value
        if isinstance(value, dict):
            return cls(**_known(cls, value, "training.provenance.hardware"))
        if not isinstance(value, str):
            raise ConfigError(f"config field 'training.provenance.hardware' must be an object, got {value!r}")
        cpu = re.fullmatch(r"(\d+) process\(es\) on (\w+)(?:, (\d+) thread\(s\) each)?", value)
        if cpu:
            threads = int(cpu.group(3)) if cpu.group(3) else None
            return cls(cpu.group(2).lower(), int(cpu.group(1)), "", threads)
        accelerator = re.fullmatch(r"(\d+) x (.+)", value)
        if accelerator:
            return cls("cuda", int(accelerator.group(1)), accelerator.group(2))
        return cls("cpu" if "CPU" in value else "cuda", 1, value)


@dataclass
class Provenance:
    """The code and machine that trained a model."""

    package_version: str | None = None  # cancer-models
    git_commit: str | None = None  # with "-dirty" when the checkout had uncommitted changes
    hardware: Hardware | None = None
    torch: str | None = None
    torchvision: str | None = None
    note: str | None = None  # anything else that changed the stored weights

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        data = dict(data)
        if "cancer-models" in data:  # version 1 keyed the package by its distribution name
            data["package_version"] = data.pop("cancer-models")
        if "weights" in data:
            data["note"] = data.pop("weights")
        data["hardware"] = Hardware.from_value(data.get("hardware"))
        return cls(**_known(cls, data, "training.provenance"))


@dataclass
class TrainingRecord:
    """``config.training``: every fact about how a model came to be, as recorded by ``train.py`` and the
    calibration that followed. Empty for a model built in code and never trained."""

    task: str = ""
    data: list[str] = field(default_factory=list)  # the image sets, as given (local folders or Hub ids)
    hub_datasets: list[str] = field(default_factory=list)
    license: str | None = None  # the training data's license, as a Hub license id
    splits: dict[str, int] = field(default_factory=dict)  # images per split
    class_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    subtypes: dict[str, Any] = field(default_factory=dict)  # images per diagnostic category
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # per split: evaluation.metrics.binary_metrics
    best_epoch: int | None = None
    epochs_run: int | None = None
    recipe: str = ""  # one readable sentence of the training recipe
    threshold_rule: str = ""
    class_collapse_on_test: bool = False
    command: str = ""  # the command as typed, for display (shlex-quoted)
    # The training settings (train.py's options, TrainConfig's fields) by name: how to recreate the run's splits.
    settings: dict[str, Any] = field(default_factory=dict)
    provenance: Provenance = field(default_factory=Provenance)
    base_model: str | None = None  # Hub id of the pretrained weights fine-tuned, if any
    name: str | None = None  # a display name for the card
    cross_validation: dict[str, Any] | None = None  # folds, per-fold figures, out-of-fold maps
    storage: dict[str, Any] | None = None  # how the weights were compressed and what that changed
    trust: dict[str, Any] | None = None  # rejection and prediction-set figures (calibration.fitting)
    explanations: dict[str, Any] | None = None  # how often the default map peaks inside the lesion
    streamed: str | None = None
    skipped_images: dict[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION
    # Not stored in config.json: the analyses of evaluations.json, read and written beside it.
    evaluations: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The record as config.json stores it, without the evaluations (evaluations.json holds them)."""
        d = dataclasses.asdict(self)
        d.pop("evaluations")
        return d

    @classmethod
    def from_dict(cls, data: Any) -> TrainingRecord:
        """Read a record of any schema version this library knows."""
        if isinstance(data, TrainingRecord):
            return data
        if not isinstance(data, dict):
            raise ConfigError(f"config field 'training' must be an object, got {type(data).__name__}")
        data = dict(data)
        version = data.pop("schema_version", 1)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ConfigError(
                f"config field 'training' has schema version {version!r}; this library reads up to {SCHEMA_VERSION}"
            )
        evaluations = {k: data.pop(k) for k in EVALUATION_KEYS if k in data}
        if isinstance(data.get("data"), str):  # version 1: "a, b"
            data["data"] = [s for s in data["data"].split(", ") if s]
        data["provenance"] = Provenance.from_dict(data.get("provenance") or {})
        if not data.get("settings") and data.get("command"):  # recorded before the settings were: from the command
            data["settings"] = settings_from_command(data["command"])
        try:
            record = cls(**_known(cls, data, "training"))
        except TypeError as e:
            raise ConfigError(f"malformed training record: {e}") from e
        record.evaluations = {**evaluations, **record.evaluations}
        return record


def settings_from_command(command: str) -> dict[str, Any]:
    """train.py's options as written in a recorded command line, by field name (``--input-size 128`` ->
    ``{"input_size": "128"}``; a flag alone -> True, ``--no-flag`` -> False; several words -> a list)."""
    settings: dict[str, Any] = {}
    key = None
    for word in shlex.split(command)[1:]:
        if word.startswith("--no-"):
            key, settings[word[5:].replace("-", "_")] = None, False
        elif word.startswith("--"):
            key = word[2:].replace("-", "_")
            settings[key] = True
        elif key is not None:
            value = settings[key]
            settings[key] = word if value is True else [*value, word] if isinstance(value, list) else [value, word]
    return settings


def read_evaluations(folder: str | Path) -> dict[str, Any]:
    """The analyses stored beside a model (``evaluations.json``); empty where there are none."""
    path = Path(folder) / EVALUATIONS_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return data


def write_evaluations(folder: str | Path, evaluations: dict[str, Any]) -> None:
    """Store ``evaluations`` as ``evaluations.json`` in ``folder`` (nothing where there are none)."""
    if evaluations:
        Path(folder, EVALUATIONS_NAME).write_text(json.dumps(evaluations, indent=2, sort_keys=True) + "\n")


def _known(cls: type, data: dict[str, Any], where: str) -> dict[str, Any]:
    """``data`` without keys ``cls`` lacks; unknown keys are an error, so a typo in a config does not vanish."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"config field '{where}' has unknown keys: {', '.join(unknown)}")
    return data
