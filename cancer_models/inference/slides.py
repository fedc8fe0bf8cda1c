"""Large images and whole slides as a stream of tiles at the model's scale, each classified and checked.

``SlidePredictor`` cuts a slide (``data.slides``) into tiles of the model's training scale, skips those with too
little tissue (*background*) and passes every tissue tile through the model's own rejection check: a tile it does
not recognise (pen, blur, folds, other tissue) is *refused*, kept apart and never averaged in. Tiles are read in a
background thread while the model classifies the previous batch, so memory stays at a few batches whatever the
slide's size. ``slide_outputs`` writes what it found as images, CSV and QuPath GeoJSON.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..data.images import to_uint8_tensor
from ..data.slides import MIN_TISSUE, SlideReader, open_slide, tile_starts, tissue_mask
from ..errors import ImageError
from ..settings import TileSpec
from .explain import overlay_heatmap
from .predict import NOT_RECOGNISED, UNCERTAIN, Predictor

THUMBNAIL_SIDE = 2048  # tissue detection and the maps work on a thumbnail this large at most
BACKGROUND, REFUSED = "background", "refused"
COLOURS = {  # QuPath classification colours (RGB)
    "benign": (44, 123, 182),
    "malignant": (215, 25, 28),
    UNCERTAIN: (253, 174, 97),
    REFUSED: (25, 25, 25),  # near-black: unlike any probability colour
    BACKGROUND: (200, 200, 200),  # grey in the heatmap; untinted in the overlay
}


@dataclass
class TileResult:
    x: int  # level-0 pixels, top left
    y: int
    size: int  # level-0 pixels, square
    tissue: float  # share of the tile that is tissue
    status: str  # "background", "refused" or the decision (benign, malignant, uncertain)
    p_malignant: float | None = None  # None for background and refused tiles
    unusualness: float | None = None  # the rejection check's multiple of its limit; None for background

    @property
    def in_distribution(self) -> bool | None:
        return None if self.status == BACKGROUND else self.status != REFUSED


@dataclass
class SlideResult:
    name: str
    dimensions: tuple[int, int]
    tile_size: int
    stride: int
    mpp: float | None
    tiles: list[TileResult]
    thumbnail: Image.Image
    model: str
    explanations: dict[str, Image.Image] = field(default_factory=dict)

    def summary(self, top: int = 5) -> dict[str, Any]:
        tissue = [t for t in self.tiles if t.status != BACKGROUND]
        answered = [t for t in tissue if t.status != REFUSED]
        share = lambda n, d: round(n / d, 4) if d else None
        # Where to look first: the most malignant answered tiles; benign tiles are no region of interest.
        ranked = sorted((t for t in answered if t.status != "benign"), key=lambda t: -t.p_malignant)[:top]
        return {
            "file": self.name,
            "model": self.model,
            "dimensions": list(self.dimensions),
            "mpp": self.mpp,
            "tile_size": self.tile_size,
            "stride": self.stride,
            "tiles": len(self.tiles),
            "tissue_tiles": len(tissue),
            "background_tiles": len(self.tiles) - len(tissue),
            "refused_tiles": len(tissue) - len(answered),
            "share_refused": share(len(tissue) - len(answered), len(tissue)),
            "share_malignant": share(sum(t.status == "malignant" for t in answered), len(answered)),
            "share_uncertain": share(sum(t.status == UNCERTAIN for t in answered), len(answered)),
            "top_regions": [
                {"x": t.x, "y": t.y, "size": t.size, "p_malignant": round(t.p_malignant, 4), "decision": t.status}
                for t in ranked
            ],
        }


class SlidePredictor:
    """Tile a large image at the model's scale, find tissue, and classify and check every tissue tile.

    Args:
        predictor: the model's Predictor.
        tile_size: tile side in level-0 pixels; default: the model's ``tile`` (``TileSpec``), converted with the
            slide's and the model's microns per pixel where both are known.
        mpp: the slide's microns per pixel, overriding what its file says.
        overlap: share of a tile that neighbouring tiles overlap (0 to 0.9).
        min_tissue: share of tissue a tile needs to be classified.
        batch_size: tiles per forward pass.
    """

    def __init__(
        self,
        predictor: Predictor,
        tile_size: int | None = None,
        mpp: float | None = None,
        overlap: float = 0.0,
        min_tissue: float = MIN_TISSUE,
        batch_size: int = 64,
    ) -> None:
        if not 0 <= overlap < 0.9:
            raise ValueError(f"overlap must be in [0, 0.9), got {overlap}")
        if tile_size is not None and tile_size < 8:
            raise ValueError(f"tile size must be at least 8 pixels, got {tile_size}")
        self.predictor, self.config = predictor, predictor.config
        self.tile_size, self.mpp, self.overlap = tile_size, mpp, overlap
        self.min_tissue, self.batch_size = min_tissue, batch_size

    def level0_tile_size(self, reader: SlideReader) -> int:
        """The tile side in the slide's level-0 pixels that shows what a training tile showed.

        Args:
            reader: the open slide, whose microns per pixel count where the model's tile has a scale.

        Returns:
            The ``tile_size`` given, else the model's ``TileSpec`` at the slide's scale (``mpp`` given, else the
            file's), else its input size.
        """
        if self.tile_size:
            return self.tile_size
        tile = self.config.tile or TileSpec(self.config.input_size)
        return tile.pixels_at(self.mpp or reader.mpp)

    def predict(self, path: str | Path, progress: bool = False) -> SlideResult:
        """Tile a slide or large image, find its tissue, and classify and check every tissue tile.

        Args:
            path: a slide OpenSlide reads, or any image file (PNG, JPEG, TIFF, DICOM).
            progress: show a progress bar over the tissue tiles.

        Returns:
            The ``SlideResult``: every tile with its coordinates, tissue share and status (background, refused
            or a decision with its probability), and the thumbnail.

        Raises:
            ImageError: a missing, empty or unreadable file, or a failure while reading tiles.
        """
        reader = open_slide(path)
        try:
            return self._predict(reader, Path(path).name, progress)
        finally:
            reader.close()

    def _predict(self, reader: SlideReader, name: str, progress: bool) -> SlideResult:
        size = self.level0_tile_size(reader)
        stride = max(1, round(size * (1 - self.overlap)))
        width, height = reader.dimensions
        thumbnail = reader.thumbnail(THUMBNAIL_SIDE)
        mask = tissue_mask(thumbnail)
        sx, sy = thumbnail.width / width, thumbnail.height / height
        tiles = []
        for y in tile_starts(height, size, stride):
            for x in tile_starts(width, size, stride):
                footprint = mask[int(y * sy) : max(int((y + size) * sy), int(y * sy) + 1),
                                 int(x * sx) : max(int((x + size) * sx), int(x * sx) + 1)]  # fmt: skip
                tissue = float(footprint.mean()) if footprint.size else 0.0
                tiles.append(TileResult(x, y, size, round(tissue, 4), BACKGROUND))
        todo = [t for t in tiles if t.tissue >= self.min_tissue]
        bar = _progress(len(todo), name) if progress else None
        for batch_tiles, batch in self._batches(reader, todo):
            probs, scores = self.predictor.analyse(batch, tta=False)
            unusual = scores.tolist() if scores is not None else [None] * len(batch_tiles)
            for tile, p, s in zip(batch_tiles, probs.tolist(), unusual, strict=True):
                decided = self.predictor.decide(p, s)
                tile.unusualness = None if s is None else round(s, 4)
                if decided.decision == NOT_RECOGNISED:
                    tile.status = REFUSED
                else:
                    tile.status, tile.p_malignant = decided.decision, round(decided.malignant_probability, 6)
            if bar:
                bar.update(len(batch_tiles))
        if bar:
            bar.close()
        mpp = self.mpp or reader.mpp
        model = self.config.training.task or self.config.architecture
        return SlideResult(name, (width, height), size, stride, mpp, tiles, thumbnail, model)

    def _batches(self, reader: SlideReader, tiles: list[TileResult]) -> Iterator[tuple[list[TileResult], torch.Tensor]]:
        """Batches of decoded tiles, read in a background thread while the caller classifies the last one (a
        bounded queue keeps memory at a few batches)."""
        out = self.config.input_size
        ready: queue.Queue = queue.Queue(maxsize=3)
        failure: list[BaseException] = []

        def read() -> None:
            try:
                for start in range(0, len(tiles), self.batch_size):
                    chunk = tiles[start : start + self.batch_size]
                    batch = torch.stack([to_uint8_tensor(reader.read(t.x, t.y, t.size, out), out) for t in chunk])
                    ready.put((chunk, batch))
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                failure.append(e)
            finally:
                ready.put(None)

        threading.Thread(target=read, daemon=True).start()
        while (item := ready.get()) is not None:
            yield item
        if failure:
            raise ImageError(f"reading the slide failed: {failure[0]}") from failure[0]

    def explain_top(self, result: SlideResult, path: str | Path, k: int) -> None:
        """Grad-CAM maps of the tiles most likely malignant, into ``result.explanations``.

        Args:
            result: what ``predict`` found on the slide.
            path: the same slide, read again for the tiles' pixels.
            k: how many tiles to explain.
        """
        reader = open_slide(path)
        try:
            answered = sorted((t for t in result.tiles if t.p_malignant is not None), key=lambda t: -t.p_malignant)
            for t in answered[:k]:
                tile = reader.read(t.x, t.y, t.size, min(t.size, 512))
                heatmap = self.predictor.heatmap(tile, label=self.config.labels[1])
                result.explanations[f"{t.x}_{t.y}"] = Image.fromarray(overlay_heatmap(tile, heatmap, 0.45))
        finally:
            reader.close()


def _progress(total: int, name: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"tiles of {name}", unit="tile")
