"""Image sets through Hugging Face ``datasets``: load, check, map labels, split by group, decode.

Every source (a local ``imagefolder`` directory, a Hub dataset id, or that dataset's parquet files downloaded
to a folder) becomes the same three splits with the same columns: ``image``, ``target`` (0 benign,
1 malignant), ``group`` and ``source``. Checks run before any image is decoded, so a wrong path or column
fails in seconds, not after an epoch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, IterableDatasetDict, concatenate_datasets, load_dataset
from datasets import Image as ImageFeature
from datasets.fingerprint import Hasher
from PIL import Image
from sklearn.model_selection import StratifiedGroupKFold

from ..errors import DataError
from ..sources import display_name, is_hub_id
from .spec import SPLIT_ALIASES, SPLITS, DataSpec, target_of
from .tiling import tile_images


def load_splits(spec: DataSpec) -> DatasetDict:
    """Load, check and combine the sources into train / validation / test."""
    if not spec.sources:
        raise DataError("no data source given")
    mask_dirs = list(spec.mask_dirs) or [None] * len(spec.sources)
    if len(mask_dirs) != len(spec.sources):
        raise DataError(f"{len(mask_dirs)} mask folder(s) for {len(spec.sources)} data source(s): give one per source")
    parts = [load_source(source, spec, masks) for source, masks in zip(spec.sources, mask_dirs, strict=True)]
    splits = DatasetDict({split: concatenate_datasets([p[split] for p in parts]) for split in SPLITS})
    return leave_out(splits, spec.leave_out) if spec.leave_out else splits


def leave_out(splits: DatasetDict, names: Sequence[str]) -> DatasetDict:
    """``splits`` without the images of the collections ``names`` (each a case-insensitive part of a collection's
    name), which form a fourth split, ``left_out``, from every split they were in.

    Args:
        splits: train / validation / test with a ``collection`` column (``standardise``).
        names: the collections to hold out.

    Returns:
        train / validation / test without them, and ``left_out``.

    Raises:
        DataError: a name that matches no collection, or one that leaves a split or a class empty.
    """
    collections = sorted({c for ds in splits.values() for c in ds.unique("collection")})
    for name in names:
        if not any(name.lower() in c.lower() for c in collections):
            raise DataError(f"--leave-out {name!r} matches no collection; the collections are {collections}")
    held = {c for c in collections if any(name.lower() in c.lower() for name in names)}
    kept = DatasetDict()
    left = []
    for split, ds in splits.items():
        kept[split], out = partition_collections(ds, names)
        left.append(out)
        if len(set(kept[split]["target"])) < 2:
            raise DataError(f"leaving out {sorted(held)} leaves the {split} split without both classes")
    kept["left_out"] = concatenate_datasets(left)
    if len(set(kept["left_out"]["target"])) < 2:
        raise DataError(f"the collections left out ({sorted(held)}) do not hold both classes: nothing to score")
    return kept


def partition_collections(ds: Dataset, names: Sequence[str]) -> tuple[Dataset, Dataset]:
    """``ds`` split into the rows whose collection none of ``names`` names and those it does (each name a
    case-insensitive part of a collection's name, as ``--leave-out`` takes them).

    Args:
        ds: standardised rows, with a ``collection`` column.
        names: the collections held out.

    Returns:
        The rows kept, and the rows held out.
    """
    held = [i for i, c in enumerate(ds["collection"]) if any(name.lower() in c.lower() for name in names)]
    return ds.select(sorted(set(range(len(ds))) - set(held))), ds.select(held)


def load_raw(source: str, cache_dir: str | None = None, streaming: bool = False) -> DatasetDict | IterableDatasetDict:
    """A local directory (imagefolder, or a Hub dataset's parquet files) or a Hub dataset id, as loaded (or, with
    ``streaming``, opened as streams), with split names normalised."""
    path = Path(source).expanduser()
    if not is_hub_id(source):
        if not path.is_dir():
            raise DataError(f"data directory {source} does not exist")
        no_images = DataError(
            f"data directory {source} has no image files in imagefolder layout "
            "(SPLIT/LABEL/*.jpg, or LABEL/*.jpg) and no parquet files (a Hub dataset downloaded with "
            "`hf download --repo-type dataset`); folders reached through symbolic links are not searched"
        )
        if _has_files(path, IMAGE_SUFFIXES):
            _imagefolder_reads_dicom()
            data_files = _split_folders(path)
            try:
                raw = load_dataset(
                    "imagefolder", data_dir=str(path), data_files=data_files, cache_dir=cache_dir, streaming=streaming
                )
            except FileNotFoundError as e:  # datasets' EmptyDatasetError: e.g. the images are behind a link
                raise no_images from e
            if not streaming:
                _check_all_loaded(path, data_files, raw)
        elif _has_files(path, {".parquet"}):
            raw = _load_dataset(str(path), cache_dir, streaming)  # as a Hub id is loaded, on the downloaded files
        else:
            raise no_images
    else:
        raw = _load_dataset(source, cache_dir, streaming)
    kind = IterableDatasetDict if streaming else DatasetDict
    if not isinstance(raw, kind):
        raw = kind({"train": raw})
    raw = kind({SPLIT_ALIASES.get(name, name): ds for name, ds in raw.items()})
    unknown = set(raw) - set(SPLITS)
    if unknown:
        raise DataError(f"{source}: unexpected split(s) {sorted(unknown)}; expected {list(SPLITS)}")
    return raw


DICOM_SUFFIXES = {".dcm", ".dicom"}
IMAGE_SUFFIXES = set(Image.registered_extensions()) | DICOM_SUFFIXES


def _split_folders(path: Path) -> dict[str, str]:
    """``datasets`` data_files for an imagefolder: one pattern per split folder (train/, validation/ or an alias,
    test/), or every image as "train" when there is none. Splits come from folders only: left to itself,
    ``datasets`` reads words in file names as split names (``train_12.bmp``, ``testA_5.bmp``) and keeps one of
    them. Naming the folders also spares it dozens of pattern searches of the whole tree."""
    folders = {SPLIT_ALIASES.get(d.name, d.name): d.name for d in path.iterdir() if d.is_dir()}
    splits = {split: folders[split] for split in SPLITS if split in folders}
    if not splits:
        return {"train": "**"}
    stray = sorted(
        str(p.relative_to(path))
        for p in path.iterdir()
        if (p.is_dir() and p.name not in splits.values()) or (p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    )
    if stray:
        raise DataError(
            f"{path} has split folders ({', '.join(splits.values())}) and also {', '.join(stray[:5])}"
            f"{' ...' if len(stray) > 5 else ''} outside them: move every image into train/, validation/ or test/"
        )
    return {split: f"{folder}/**" for split, folder in splits.items()}


def _check_all_loaded(path: Path, data_files: dict[str, str], raw: DatasetDict) -> None:
    """Every image file under each split folder must be a row of that split: fail, naming the split, if
    ``datasets`` left any out (e.g. files missing from a metadata.csv)."""
    suffixes = _imagefolder_suffixes()
    for split, pattern in data_files.items():
        folder = path / pattern.removesuffix("**")  # "train/**" -> train/, "**" -> the folder itself
        found = sum(1 for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        loaded = len(raw[split]) if split in raw else 0
        if loaded != found:
            raise DataError(
                f"{folder}: {found} image files but {loaded} loaded as split {split!r}; every image must load "
                "(is each file listed in its metadata.csv, and is each a readable image?)"
            )


def _imagefolder_reads_dicom() -> None:
    """Let ``datasets``' imagefolder list DICOM files too: they are decoded by ``load_image`` (decoding.py),
    never by PIL."""
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    ImageFolder.EXTENSIONS = sorted(set(ImageFolder.EXTENSIONS) | DICOM_SUFFIXES)


def _imagefolder_suffixes() -> set[str]:
    """The file suffixes ``datasets``' imagefolder lists as images (DICOM included, see above)."""
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    return {suffix.lower() for suffix in ImageFolder.EXTENSIONS}


def _has_files(folder: Path, suffixes: set[str]) -> bool:
    return any(p.suffix.lower() in suffixes for p in folder.rglob("*"))


def _load_dataset(source: str, cache_dir: str | None = None, streaming: bool = False) -> Any:
    try:
        return load_dataset(source, cache_dir=cache_dir, streaming=streaming)
    except Exception as e:  # datasets raises many types for "cannot find, reach or read this"
        raise DataError(f"cannot load dataset {source!r} (unreadable files, or not reachable on the Hub): {e}") from e


def load_source(source: str, spec: DataSpec, mask_dir: str | None = None) -> DatasetDict:
    """One source's train / validation / test, each standardised (and with ``spec.tile`` and the source's scale
    in ``spec.source_mpp``, cut into tiles of the model's scale); a split the source lacks is carved out of its
    train split by group (``spec``'s fractions and seed), as the training run did."""
    raw = load_raw(source, spec.cache_dir)
    if "train" not in raw:
        raise DataError(f"{source}: no train split (found {sorted(raw)})")
    splits = DatasetDict(
        {name: standardise(ds, spec, f"{source}/{name}", source, mask_dir) for name, ds in raw.items()}
    )
    if mask_dir and tile_side(spec, source):
        raise DataError(f"{source}: lesion masks cannot be used with images cut into tiles")
    splits = DatasetDict({name: at_model_scale(ds, spec, source, f"{source}/{name}") for name, ds in splits.items()})
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        splits = _split_by_group(splits, missing, spec)
    return splits


def at_model_scale(ds: Dataset, spec: DataSpec, source: str, where: str) -> Dataset:
    """``ds`` (standardised rows of ``source``) with images larger than a tile at the model's scale cut into
    tiles (``tiling.tile_images``), where ``spec`` gives the model's tile and the source's microns per pixel;
    otherwise ``ds`` itself."""
    side = tile_side(spec, source)
    return tile_images(ds, side, where) if side else ds


def tile_side(spec: DataSpec, source: str) -> int | None:
    """The side, in ``source``'s own pixels, of a tile at the model's scale; None where the images are used
    whole (no tile scale, or no scale known for the source)."""
    mpp = spec.source_mpp.get(display_name(source))
    return spec.tile.pixels_at(mpp) if spec.tile and mpp else None


def mask_path(image: str | Path, source: str | Path, mask_dir: str | Path) -> Path:
    """Where an image's lesion mask lives: ``mask_dir``/<the image's path relative to ``source``>, as a .png."""
    relative = Path(image).relative_to(Path(source).expanduser().resolve())
    return Path(mask_dir).expanduser() / relative.with_suffix(".png")


def with_mask_files(
    images: Sequence[str | Path], source: str | Path, mask_dir: str | Path, where: str
) -> tuple[list[Path], list[Path]]:
    """The images that have a lesion mask file (``mask_path``), and those masks: an image set may hold masks for
    some of its images only (HAM10000's added images have none).

    Args:
        images: image files under ``source``.
        source: the image folder the masks mirror.
        mask_dir: the mask folder.
        where: what ``images`` are, for the error.

    Returns:
        The images with a mask file, in order, and their masks.

    Raises:
        DataError: no image has a mask file.
    """
    pairs = [(Path(image), mask_path(image, source, mask_dir)) for image in images]
    kept = [(image, mask) for image, mask in pairs if mask.is_file()]
    if not kept:
        raise DataError(f"none of the {len(pairs)} images of {where} has a mask file in {mask_dir}")
    return [image for image, _ in kept], [mask for _, mask in kept]


def mask_paths(ds: Dataset, source: str, mask_dir: str) -> list[str]:
    """Each image's lesion mask (``mask_path``), or "" where there is none."""
    if not Path(mask_dir).expanduser().is_dir():
        raise DataError(f"mask folder {mask_dir} does not exist")
    root = Path(source).expanduser().resolve()
    paths = []
    for item in ds.cast_column("image", ImageFeature(decode=False))["image"]:
        if not item.get("path") or not Path(item["path"]).is_relative_to(root):
            raise DataError(f"masks need images in a local folder; {source} has images that are not files under it")
        path = mask_path(item["path"], source, mask_dir)
        paths.append(str(path) if path.is_file() else "")
    return paths


def standardise(ds: Dataset, spec: DataSpec, where: str, source: str, mask_dir: str | None = None) -> Dataset:
    columns = ds.column_names
    for role, name in (("image", spec.image_column), ("label", spec.label_column)):
        if name not in columns:
            raise DataError(f"{where}: no {role} column {name!r}; columns are {columns}")
    if len(ds) == 0:
        raise DataError(f"{where}: no images")
    feature = ds.features[spec.label_column]
    raw = ds[spec.label_column]
    names = [feature.int2str(v) for v in raw] if isinstance(feature, ClassLabel) else [str(v) for v in raw]
    targets = []
    unmapped = Counter()
    for name in names:
        target = target_of(name, spec.label_map)
        if target is None:
            unmapped[name] += 1
        else:
            targets.append(target)
    if unmapped:
        raise DataError(
            f"{where}: labels {dict(unmapped)} are neither benign/malignant nor in the label map "
            f"(--label-map 'RAW=benign,RAW=malignant')"
        )
    if spec.group_column in columns:
        groups = [f"{source}:{g}" for g in ds[spec.group_column]]
    else:
        groups = [f"{source}:{where}:{i}" for i in range(len(ds))]  # each image its own group
    out = ds.select_columns([spec.image_column])
    if spec.image_column != "image":
        out = out.rename_column(spec.image_column, "image")
    subtypes = [str(v) for v in ds[spec.subtype_column]] if spec.subtype_column in columns else [""] * len(ds)
    if spec.collection_column in columns:
        collections = [str(v) for v in ds[spec.collection_column]]
    else:
        collections = [display_name(source)] * len(ds)
    masks = mask_paths(ds, source, mask_dir) if mask_dir else [""] * len(ds)
    # The added columns follow from the data and these settings, so they key datasets' cache without hashing
    # every value (which took a minute for 200,000 images).
    columns_read = (spec.label_column, spec.group_column, spec.subtype_column, spec.collection_column)
    key = Hasher.hash((ds._fingerprint, *columns_read, spec.label_map))
    key = Hasher.hash((key, where, source, mask_dir, masks if mask_dir else None))
    columns = {
        "target": targets,
        "group": groups,
        "source": [source] * len(ds),
        "collection": collections,
        "subtype": subtypes,
        "mask": masks,
    }
    for name, values in columns.items():
        out = out.add_column(name, values, new_fingerprint=Hasher.hash((key, name)))
    return out


def _split_by_group(splits: DatasetDict, missing: list[str], spec: DataSpec) -> DatasetDict:
    """Carve the missing validation/test splits out of train, stratified, never cutting a group."""
    train = splits["train"]
    for name in missing:
        fraction = spec.validation_fraction if name == "validation" else spec.test_fraction
        keep, take = group_split(train["target"], train["group"], fraction, spec.seed)
        splits[name] = train.select(take)
        train = train.select(keep)
    splits["train"] = train
    return splits


def group_split(
    targets: Sequence[int], groups: Sequence[str], fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, take) with about ``fraction`` of the images in ``take``, stratified by target;
    every group falls wholly on one side."""
    if not 0 < fraction < 1:
        raise DataError(f"split fraction must be in (0, 1), got {fraction}")
    n_folds = max(2, round(1 / fraction))
    n_groups = len(set(groups))
    if n_groups < n_folds:
        raise DataError(f"only {n_groups} groups: too few to split off {fraction:.0%} without cutting one")
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    keep, take = next(folds.split(np.zeros(len(targets)), targets, groups))
    return keep, take


def fold_indices(
    targets: Sequence[int], groups: Sequence[str], folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` (train, held-out) index pairs, stratified by target, never cutting a group; each image is held
    out exactly once."""
    n_groups = len(set(groups))
    if not 2 <= folds <= n_groups:
        raise DataError(f"{folds} folds need 2 <= folds <= the number of groups ({n_groups})")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(targets)), targets, groups))


def pooled_for_folds(splits: DatasetDict) -> Dataset:
    """What cross-validation cuts into folds: train and validation together (the test split stays out)."""
    return concatenate_datasets([splits["train"], splits["validation"]])


def fold_splits(splits: DatasetDict, fold: int, folds: int, seed: int) -> DatasetDict:
    """Fold ``fold`` of ``folds``: train on the other folds of train + validation, validate on this one; the test
    split unchanged."""
    pooled = pooled_for_folds(splits)
    keep, held_out = fold_indices(pooled["target"], pooled["group"], folds, seed)[fold]
    folded = {"train": pooled.select(keep), "validation": pooled.select(held_out)}
    return DatasetDict({**splits, **folded})  # test (and left_out) unchanged


def check_no_shared_groups(groups_by_split: dict[str, Sequence[str]]) -> None:
    """Raise a DataError if any group (near-copies of one source image) is in two splits."""
    seen: dict[str, str] = {}
    for name, groups in groups_by_split.items():
        for group in set(groups):
            if group in seen and seen[group] != name:
                raise DataError(f"group {group!r} is in both {seen[group]} and {name}: the splits leak")
            seen[group] = name
