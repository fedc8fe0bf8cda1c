"""What an image set is and how to read it (``DataSpec``, also as a training run recorded it), and label names:
plain Python, so that the training settings and the command line's help load without the data libraries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import DataError
from ..record import TrainingRecord
from ..settings import TileSpec

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"val": "validation", "valid": "validation", "dev": "validation", "eval": "validation"}
_TARGET_NAMES = {"benign": 0, "malignant": 1}


@dataclass
class DataSpec:
    """Where the images are and how to read them."""

    sources: Sequence[str]
    image_column: str = "image"
    label_column: str = "label"
    # Near-copies of one source image share a group; used when the column exists.
    group_column: str = "group"
    # The fine diagnosis (e.g. lung_aca, nevus), reported per category; used when the column exists.
    subtype_column: str = "subtype"
    # The collection an image comes from (a clinic, a lab, a sub-collection: HAM10000's vidir_modern); where the
    # column is missing, the data source's own name. What --leave-out names and sources are reported by.
    collection_column: str = "source"
    # Collections held out of train, validation and test alike (a case-insensitive part of their name): they
    # become the "left_out" split, scored as images from a clinic or lab the model never saw.
    leave_out: Sequence[str] = ()
    # The model's tile scale and each source's microns per pixel (by its folder or dataset name): images of a
    # source larger than a tile at that scale are cut into tiles (tiling.py). Empty: images are used whole.
    tile: TileSpec | None = None
    source_mpp: dict[str, float] = field(default_factory=dict)
    # Raw label -> "benign" / "malignant". Labels already named benign/malignant need no entry.
    label_map: dict[str, str] = field(default_factory=dict)
    # Lesion masks (0/255 PNGs at each image's relative path), one folder or None per source, for
    # mask-guided training; an image without a mask file simply has none.
    mask_dirs: Sequence[str | None] = ()
    # datasets' cache folder (source arrow files and decoded images); None: HF_DATASETS_CACHE.
    cache_dir: str | None = None
    # Used only for sources without their own validation / test splits.
    validation_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0


def parse_label_map(text: str | None) -> dict[str, str]:
    """``"lung_n=benign,lung_aca=malignant"`` -> dict, checking the targets."""
    if not text:
        return {}
    mapping = {}
    for item in text.split(","):
        raw, sep, target = item.partition("=")
        if not sep or target.strip().lower() not in _TARGET_NAMES:
            raise DataError(f"bad label map entry {item!r}: expected RAW=benign or RAW=malignant")
        mapping[raw.strip()] = target.strip().lower()
    return mapping


def parse_source_mpp(items: Sequence[str]) -> dict[str, float]:
    """``["histopathology_glas=0.62", ...]`` -> ``{"histopathology_glas": 0.62}``: each source's microns per
    pixel, by the name of its folder or Hub dataset."""
    out = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        try:
            mpp = float(value)
        except ValueError:
            mpp = 0.0
        if not sep or not name or not mpp > 0:
            raise DataError(
                f"bad source scale {item!r}: expected NAME=MICRONS_PER_PIXEL, e.g. histopathology_glas=0.62"
            )
        out[name] = mpp
    return out


def target_of(name: str, label_map: dict[str, str]) -> int | None:
    """A raw label's target (0 benign, 1 malignant) through the label map, or None if it has none."""
    return _TARGET_NAMES.get(label_map.get(name, name).strip().lower())


def recorded_data_spec(record: TrainingRecord, sources: list[str], label_map: dict[str, str]) -> DataSpec:
    """How the training run read and split ``sources``: its columns, label map, split fractions and seed (the
    defaults where the record holds no settings)."""
    settings, defaults = record.settings, DataSpec(sources)
    recorded_map = parse_label_map(settings.get("label_map") or "")
    tile = TileSpec(int(settings["tile_size"]), settings.get("tile_mpp")) if settings.get("tile_size") else None
    return DataSpec(
        list(sources),
        leave_out=list(settings.get("leave_out") or ()),
        tile=tile,
        source_mpp=parse_source_mpp(settings.get("source_mpp") or []),
        image_column=settings.get("image_column", defaults.image_column),
        label_column=settings.get("label_column", defaults.label_column),
        group_column=settings.get("group_column", defaults.group_column),
        label_map={**recorded_map, **label_map},
        validation_fraction=float(settings.get("validation_fraction", defaults.validation_fraction)),
        test_fraction=float(settings.get("test_fraction", defaults.test_fraction)),
        seed=int(settings.get("seed", defaults.seed)),
    )
