"""Splits decoded once to uint8 tensors at the model's input size, through ``datasets``.

``Dataset.map`` decodes every image (``load_image``, the Predictor's path) in ``num_proc`` processes into
fixed-shape uint8 arrays in an Arrow file beside the data's own cache, keyed by ``datasets``' fingerprint: the
same data at the same size is decoded once, and later runs (and the other processes of a distributed run) read
the cached file. A decoded split is then either loaded into RAM (small sets: fastest) or read batch by batch from
the memory-mapped file (``ArrowImages``), so a set larger than memory trains in constant memory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from datasets import Array3D, Dataset, Value
from datasets import Image as ImageFeature

from ..errors import DataError, ImageError
from .images import load_image, prepare_image, to_uint8_tensor

# A split larger than this, decoded, is read from disk rather than loaded into RAM (``in_memory=None``).
IN_MEMORY_LIMIT_BYTES = 2 * 1024**3
# Below this many images, decoding in one process is faster than starting workers.
PARALLEL_FROM = 2000
_PARENT_PID = os.getpid()


class ArrowImages:
    """A uint8 array column (N, C, S, S) of a decoded dataset, read from its memory-mapped Arrow file on demand:
    indexing with a slice or a list of indices returns a tensor of just those rows."""

    def __init__(self, ds: Dataset, column: str) -> None:
        self._ds = ds.with_format("arrow", columns=[column])
        self.column = column
        self.shape = (len(ds), *ds.features[column].shape)

    def __len__(self) -> int:
        return self.shape[0]

    def select(self, indices: Sequence[int]) -> ArrowImages:
        """The rows at ``indices``, in that order, still read from the cache on demand."""
        return ArrowImages(self._ds.select(indices), self.column)

    def __getitem__(self, index: int | slice | Sequence[int] | torch.Tensor) -> torch.Tensor:
        if isinstance(index, int):
            return self[[index]][0]
        if isinstance(index, torch.Tensor | np.ndarray):
            index = index.tolist()
        if isinstance(index, slice):
            index = list(range(len(self)))[index]
        if len(index) == 0:
            return torch.empty((0, *self.shape[1:]), dtype=torch.uint8)
        rows = self._ds[index].column(self.column).combine_chunks()
        return torch.from_numpy(np.ascontiguousarray(rows.to_numpy(zero_copy_only=False)).copy())


@dataclass
class DecodedSplit:
    """A split decoded once to uint8 tensors at the model's input size (augmentation works on these)."""

    images: torch.Tensor | ArrowImages  # uint8 (N, 3, S, S)
    targets: torch.Tensor  # int64 (N,)
    groups: list[str]
    subtypes: list[str] = field(default_factory=list)  # "" where the data has no subtype column
    # uint8 (N, 1, S, S), 255 inside the lesion, resized like the images; None where no image has a mask file.
    # An image without a lesion, or without a mask file, is all zeros.
    masks: torch.Tensor | ArrowImages | None = None
    # Images left out because they could not be decoded (decode_split's skip_bad): "file: reason".
    skipped: list[str] = field(default_factory=list)
    # Whether the images were read from datasets' cache rather than decoded by this call.
    cache_hit: bool = False
    # The collection of each image (a clinic, lab or sub-collection; ``DataSpec.collection_column``).
    collections: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def in_memory(self) -> bool:
        return isinstance(self.images, torch.Tensor)

    def subset(self, indices: Sequence[int] | np.ndarray) -> DecodedSplit:
        """The images at ``indices``, in that order, kept where this split keeps them (in RAM, or read from the
        memory-mapped cache: a sample of a large set is not loaded whole)."""
        index = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        rows = index.tolist()

        def take(column: torch.Tensor | ArrowImages | None) -> torch.Tensor | ArrowImages | None:
            if column is None:
                return None
            return column.select(rows) if isinstance(column, ArrowImages) else column[index]

        return DecodedSplit(
            take(self.images),
            self.targets[index],
            [self.groups[i] for i in rows],
            [self.subtypes[i] for i in rows] if self.subtypes else [],
            take(self.masks),
            collections=[self.collections[i] for i in rows] if self.collections else [],
        )

    def class_counts(self) -> list[int]:
        return torch.bincount(self.targets, minlength=2).tolist()

    def subtype_counts(self) -> dict[str, list[int]]:
        """{subtype: [benign images, malignant images]}, for the images whose data names one."""
        counts: dict[str, list[int]] = {}
        for subtype, target in zip(self.subtypes, self.targets.tolist(), strict=True):
            if subtype:
                counts.setdefault(subtype, [0, 0])[target] += 1
        return dict(sorted(counts.items()))

    def lesion_count(self, chunk: int = 1024) -> int:
        """Images whose mask marks a lesion."""
        if self.masks is None:
            return 0
        return sum(
            int((self.masks[i : i + chunk].flatten(1).amax(dim=1) > 0).sum()) for i in range(0, len(self), chunk)
        )


def _decode_rows(batch: dict[str, list[Any]], size: int, with_masks: bool, preprocessing: str) -> dict[str, list[Any]]:
    """``Dataset.map`` function: each row's image (and lesion mask) decoded at ``size``, or its decode error."""
    if os.getpid() != _PARENT_PID:
        # A forked worker: PyTorch's OpenMP pool does not survive fork, and the resize would wait on it forever.
        # One thread per worker is what parallel decoding wants anyway.
        torch.set_num_threads(1)
    pixels, errors, lesions = [], [], []
    for i, item in enumerate(batch["image"]):
        try:
            image = prepare_image(load_image(item["bytes"] or item["path"]), preprocessing)
            pixels.append(to_uint8_tensor(image, size).numpy())
            errors.append("")
        except ImageError as e:
            pixels.append(np.zeros((3, size, size), dtype=np.uint8))
            errors.append(f"{item.get('path') or 'embedded image'}: {e}")
        if with_masks:
            lesions.append(_decode_mask(batch["mask"][i], size))
    out = {"pixels": pixels, "error": errors}
    if with_masks:
        out["lesion"] = lesions
    return out


def _decode_mask(path: str, size: int) -> np.ndarray:
    if not path:
        return np.zeros((1, size, size), dtype=np.uint8)
    try:
        grey = load_image(path).convert("L")
    except ImageError as e:
        raise DataError(f"lesion mask {path}: {e}") from e
    return to_uint8_tensor(grey.convert("RGB"), size)[:1].numpy()


def decode_split(
    ds: Dataset,
    size: int,
    skip_bad: bool = False,
    desc: str = "decoding",
    in_memory: bool | None = True,
    num_proc: int | None = None,
    preprocessing: str = "none",
) -> DecodedSplit:
    """Decode every image through ``load_image`` (the Predictor's path) at ``size``, through datasets' cache.

    ``in_memory``: load the decoded images into RAM (True), read them from the memory-mapped cache (False), or
    decide by their size (None: RAM up to ``IN_MEMORY_LIMIT_BYTES``). ``num_proc``: decoding processes (default:
    one per CPU core for large sets). ``preprocessing``: the model's (``prepare_image``), applied before resizing.
    An image that cannot be decoded is a DataError naming it, or with ``skip_bad`` is left out and listed in
    ``skipped``.
    """
    with_masks = "mask" in ds.column_names and any(ds["mask"])
    if with_masks and preprocessing != "none":
        raise DataError(f"lesion masks cannot follow the {preprocessing!r} preprocessing's crop: train without masks")
    features = ds.features.copy()
    del features["image"]
    features["pixels"] = Array3D((3, size, size), "uint8")
    features["error"] = Value("string")
    if with_masks:
        features["lesion"] = Array3D((1, size, size), "uint8")
    if num_proc is None:
        num_proc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    num_proc = num_proc if len(ds) >= PARALLEL_FROM and num_proc and num_proc > 1 else None
    cached_before = _cache_files_beside(ds)
    decoded = ds.cast_column("image", ImageFeature(decode=False)).map(
        _decode_rows,
        fn_kwargs={"size": size, "with_masks": with_masks, "preprocessing": preprocessing},
        batched=True,
        batch_size=64,
        num_proc=num_proc,
        features=features,
        remove_columns=["image"],
        desc=desc,
    )
    written = {f["filename"] for f in decoded.cache_files} - {f["filename"] for f in ds.cache_files}
    cache_hit = bool(written) and written <= cached_before
    errors = decoded["error"]
    skipped = [e for e in errors if e]
    if skipped and not skip_bad:
        raise DataError(f"image {skipped[0]}")
    if skipped:
        decoded = decoded.select([i for i, e in enumerate(errors) if not e])
    if in_memory is None:
        in_memory = len(decoded) * 3 * size * size <= IN_MEMORY_LIMIT_BYTES
    images = ArrowImages(decoded, "pixels")
    masks = ArrowImages(decoded, "lesion") if with_masks else None
    if in_memory:
        images, masks = images[:], (None if masks is None else masks[:])
    subtypes = list(decoded["subtype"]) if "subtype" in decoded.column_names else [""] * len(decoded)
    targets = torch.tensor(decoded["target"], dtype=torch.int64)
    collections = list(decoded["collection"]) if "collection" in decoded.column_names else []
    return DecodedSplit(images, targets, list(decoded["group"]), subtypes, masks, skipped, cache_hit, collections)


def _cache_files_beside(ds: Dataset) -> set[str]:
    """The Arrow files in the folder of ``ds``'s own cache (where ``map`` writes its results)."""
    folders = {os.path.dirname(f["filename"]) for f in ds.cache_files}
    return {os.path.join(d, name) for d in folders for name in os.listdir(d) if name.endswith(".arrow")}
