"""``train.py --streaming``: a training split read as a stream (``datasets.IterableDataset``), for sets too large
for local disk.

The training images are read in order through a shuffle buffer (reshuffled each epoch), split across processes
with ``split_dataset_by_node``, and decoded as they arrive; one pass over the label and group columns alone
counts them first (for the loss weights, the schedule and the group check). Validation and test must be splits of
the source; they are read in full and decoded like any split (they are small).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from datasets import ClassLabel, Dataset, IterableDataset, concatenate_datasets
from datasets import Image as ImageFeature
from datasets.distributed import split_dataset_by_node

from ..errors import DataError, ImageError
from ..sources import display_name
from .image_sets import load_raw
from .images import load_image, prepare_image, to_uint8_tensor
from .spec import SPLITS, DataSpec, target_of


@dataclass
class StreamedSplit:
    """The training stream, and what the counting pass learned about it."""

    stream: IterableDataset  # standardised rows: image (undecoded), target, group, subtype, source, mask
    targets: list[int]
    groups: list[str]
    skipped: list[str] = field(default_factory=list)  # filled while training, with skip_bad

    def __len__(self) -> int:
        return len(self.targets)

    def class_counts(self) -> list[int]:
        return [self.targets.count(0), self.targets.count(1)]

    def head(self, n: int) -> Dataset:
        """The first ``n`` rows of the stream (before shuffling), read in full: a sample of the training images."""
        return Dataset.from_list(list(self.stream.take(n)))


def load_streamed(spec: DataSpec) -> tuple[StreamedSplit, dict[str, Dataset]]:
    """The sources' train splits as one stream; their validation and test splits read in full."""
    streams, held_out = [], {"validation": [], "test": []}
    targets, groups = [], []
    for source in spec.sources:
        raw = load_raw(source, spec.cache_dir, streaming=True)
        missing = [s for s in SPLITS if s not in raw]
        if missing:
            raise DataError(f"{source}: --streaming needs train, validation and test splits; missing {missing}")
        for name in ("validation", "test"):
            held_out[name].append(Dataset.from_list(list(_standardise(raw[name], spec, source))))
        for row in _standardise(raw["train"], spec, source, labels_only=True):  # no image is read
            targets.append(row["target"])
            groups.append(row["group"])
        streams.append(_standardise(raw["train"], spec, source))
    if not targets:
        raise DataError("the training stream is empty")
    train = streams[0] if len(streams) == 1 else concatenate_datasets(streams)
    return StreamedSplit(train, targets, groups), {k: concatenate_datasets(v) for k, v in held_out.items()}


STANDARD_COLUMNS = ["image", "target", "group", "subtype", "source", "collection", "mask"]


def _standardise(ds: IterableDataset, spec: DataSpec, source: str, labels_only: bool = False) -> IterableDataset:
    """Rows with the columns every split has (``data.standardise``), mapped as they are read."""
    names = ds.column_names or []
    for role, name in (("image", spec.image_column), ("label", spec.label_column)):
        if name not in names:
            raise DataError(f"{source}: no {role} column {name!r}; columns are {names}")
    label = ds.features[spec.label_column] if ds.features else None
    if labels_only:
        ds = ds.select_columns([c for c in names if c in (spec.label_column, spec.group_column)])
    else:
        if spec.image_column != "image":
            ds = ds.rename_column(spec.image_column, "image")
        ds = ds.cast_column("image", ImageFeature(decode=False))
    ds = ds.map(_standard_row, fn_kwargs={"spec": spec, "source": source, "label": label}, with_indices=True)
    return ds.select_columns(["target", "group"] if labels_only else STANDARD_COLUMNS)


def _standard_row(row: dict[str, Any], index: int, spec: DataSpec, source: str, label: Any) -> dict[str, Any]:
    raw = row[spec.label_column]
    name = label.int2str(raw) if isinstance(label, ClassLabel) else str(raw)
    target = target_of(name, spec.label_map)
    if target is None:
        raise DataError(f"{source}: label {name!r} is neither benign/malignant nor in the label map")
    group = row.get(spec.group_column)
    return {
        "target": target,
        "group": f"{source}:{group}" if group is not None else f"{source}:stream:{index}",
        "subtype": str(row.get(spec.subtype_column) or ""),
        "source": source,
        "collection": str(row.get(spec.collection_column) or display_name(source)),
        "mask": "",
    }


class StreamedImages(torch.utils.data.IterableDataset):
    """(uint8 image, target) pairs decoded at ``size`` from this process's share of the shuffled stream; an
    image that cannot be decoded stops the run naming it, or with ``skip_bad`` is left out and listed."""

    def __init__(
        self,
        split: StreamedSplit,
        size: int,
        seed: int,
        rank: int,
        world: int,
        skip_bad: bool,
        buffer: int,
        preprocessing: str = "none",
    ) -> None:
        self.split, self.size, self.skip_bad, self.preprocessing = split, size, skip_bad, preprocessing
        self.stream = split_dataset_by_node(split.stream.shuffle(seed=seed, buffer_size=buffer), rank, world)

    def set_epoch(self, epoch: int) -> None:
        self.stream.set_epoch(epoch)  # the shuffle buffer's order follows seed + epoch: resume is exact

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for row in self.stream:
            item = row["image"]
            try:
                decoded = prepare_image(load_image(item["bytes"] or item["path"]), self.preprocessing)
                image = to_uint8_tensor(decoded, self.size)
            except ImageError as e:
                where = item.get("path") or "embedded image"
                if not self.skip_bad:
                    raise DataError(f"image {where}: {e}") from e
                if not any(s.startswith(f"{where}: ") for s in self.split.skipped):  # once, not once per epoch
                    self.split.skipped.append(f"{where}: {e}")
                continue
            yield image, torch.tensor(row["target"])
