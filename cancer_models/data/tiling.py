"""Training images at one physical scale: an image set whose images are larger than a tile of the model's scale
(GlaS fields, 775 x 522 px at 0.62 um per pixel) is cut into tiles of that scale, as a slide is when predicting.

A source's microns per pixel (``DataSpec.source_mpp``) and the model's tile (``DataSpec.tile``, a ``TileSpec``)
give the tile's side in the source's pixels. An image no more than half again as large as that is one tile (the
LC25000 tiles themselves); a larger one is cut on a grid with the last row and column shifted in to end at the
edge (``slides.tile_starts``), and tiles with less tissue than a slide's tile needs are dropped. Every tile keeps
its image's label, group (the patient: a split never cuts one) and collection; its path is the image's with
``#x,y`` added.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from datasets import Dataset
from datasets import Image as ImageFeature
from PIL import Image

from ..errors import DataError, ImageError
from .images import load_image
from .slides import MIN_TISSUE, tile_starts, tissue_mask

# An image up to this many times a tile's side is one tile, resized: cutting it would make slivers.
ONE_TILE = 1.5


def tile_images(ds: Dataset, side: int, where: str) -> Dataset:
    """``ds`` (standardised rows) with each image larger than a tile cut into tiles of ``side`` pixels.

    Args:
        ds: rows with an ``image`` column and the standard columns (``image_sets.standardise``).
        side: the tile's side in the images' own pixels (``TileSpec.pixels_at`` the source's scale).
        where: the split's name, for messages.

    Returns:
        The rows of images that are one tile as they were, and a row per tissue tile of every larger one.

    Raises:
        DataError: an image that cannot be read, or a set left with no tile.
    """
    images = ds.cast_column("image", ImageFeature(decode=False))
    tiled = images.map(
        _tile_rows,
        fn_kwargs={"side": side},
        batched=True,
        batch_size=16,
        desc=f"tiling {where} at {side} px",
    )
    if len(tiled) == 0:
        raise DataError(f"{where}: no image holds a tile of tissue at {side} px")
    return tiled.cast_column("image", ImageFeature())


def _tile_rows(batch: dict[str, list[Any]], side: int) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {key: [] for key in batch}
    for i, item in enumerate(batch["image"]):
        name = item.get("path") or "embedded image"
        try:
            image = load_image(item["bytes"] or item["path"])
        except ImageError as e:
            raise DataError(f"{name}: {e}") from None
        if max(image.size) <= ONE_TILE * side:
            tiles = [item]
        else:
            tiles = [{"bytes": _png(tile), "path": f"{name}#{x},{y}"} for x, y, tile in _tissue_tiles(image, side)]
        for tile in tiles:
            for key, values in batch.items():
                out[key].append(tile if key == "image" else values[i])
    return out


def _tissue_tiles(image: Image.Image, side: int) -> Iterator[tuple[int, int, Image.Image]]:
    """(x, y, tile) for every tile of ``side`` pixels with at least ``MIN_TISSUE`` tissue."""
    for y in tile_starts(image.height, side, side):
        for x in tile_starts(image.width, side, side):
            tile = Image.new("RGB", (side, side), "white")  # beyond the edge: white, as glass
            tile.paste(image.crop((x, y, min(x + side, image.width), min(y + side, image.height))))
            if tissue_mask(tile).mean() >= MIN_TISSUE:
                yield x, y, tile


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
