"""Large images and whole slides: a stream of tiles at the model's scale, each classified and checked.

    python -m cancer_models.slides --model models/histopathology-cancer-cnn --out results/ slide.svs field.png

A slide is read through OpenSlide (``openslide-python`` with the ``openslide-bin`` wheel: .svs, .ndpi, .mrxs,
generic pyramidal TIFF and the other formats it knows); any other image file through PIL, decoded once. Tissue
is found on a low-resolution thumbnail (Otsu's threshold on saturation, as TIAToolbox and WSInfer do); tiles
with too little of it are *background* and are not classified. Every tissue tile passes the model's own
rejection check: a tile it does not recognise (pen, blur, folds, other tissue) is *refused*, shown in its own
colour and never averaged in. Tiles are read in a background thread while the model classifies the previous
batch, so memory stays at a few batches whatever the slide's size.

Outputs per file (``write_outputs``): ``<name>.heatmap.png`` (tile probabilities over the thumbnail),
``<name>.overlay.png``, ``<name>.tiles.csv``, ``<name>.geojson`` (tile polygons in level-0 pixels with their
decision, colour and measurements, for QuPath's *File > Import objects from file*) and ``<name>.summary.json``;
with ``--explain K``, Grad-CAM maps of the K highest-scoring tiles.
"""

from __future__ import annotations

import argparse
import csv
import json
import queue
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from .errors import CheckpointError, ConfigError, ImageError
from .explain import overlay_heatmap
from .dicom import is_dicom
from .images import load_image, to_uint8_tensor
from .models import load_pretrained
from .predict import NOT_RECOGNISED, UNCERTAIN, Predictor

THUMBNAIL_SIDE = 2048  # tissue detection and the maps work on a thumbnail this large at most
MIN_TISSUE = 0.25  # a tile needs this share of tissue to be classified
MIN_SATURATION = 0.06  # Otsu never goes below this: a blank or grey image has no tissue to split off
MAX_PLAIN_PIXELS = 1_000_000_000  # a non-pyramidal file is decoded whole: at most a gigapixel
BACKGROUND, REFUSED = "background", "refused"
CSV_COLUMNS = ["x", "y", "width", "height", "tissue", "decision", "p_malignant", "in_distribution", "unusualness"]
COLOURS = {  # QuPath classification colours (RGB)
    "benign": (44, 123, 182),
    "malignant": (215, 25, 28),
    UNCERTAIN: (253, 174, 97),
    REFUSED: (25, 25, 25),  # dark: unlike any probability colour
    BACKGROUND: (200, 200, 200),
}


class SlideReader:
    """A large image: its level-0 size, microns per pixel when known, regions and a thumbnail."""

    dimensions: tuple[int, int]
    mpp: float | None

    def read(self, x: int, y: int, size: int, out: int) -> Image.Image:
        """The level-0 square (x, y, size) as an RGB image of ``out`` x ``out`` pixels."""
        raise NotImplementedError

    def thumbnail(self, side: int) -> Image.Image:
        raise NotImplementedError

    def close(self) -> None:
        pass


class OpenSlideReader(SlideReader):
    """A pyramidal slide through OpenSlide: each tile is read from the level closest above its output scale."""

    def __init__(self, slide) -> None:
        self.slide = slide
        self.dimensions = slide.dimensions
        mpp = slide.properties.get("openslide.mpp-x")
        self.mpp = float(mpp) if mpp else None

    def read(self, x: int, y: int, size: int, out: int) -> Image.Image:
        level = self.slide.get_best_level_for_downsample(size / out)
        downsample = self.slide.level_downsamples[level]
        side = max(1, round(size / downsample))
        region = self.slide.read_region((x, y), level, (side, side))
        # Transparent margins (outside the scanned area) become white, like glass.
        rgb = Image.alpha_composite(Image.new("RGBA", region.size, "white"), region).convert("RGB")
        return rgb if side == out else rgb.resize((out, out), Image.BILINEAR, reducing_gap=2.0)

    def thumbnail(self, side: int) -> Image.Image:
        thumb = self.slide.get_thumbnail((side, side)).convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", thumb.size, "white"), thumb).convert("RGB")

    def close(self) -> None:
        self.slide.close()


class PlainImageReader(SlideReader):
    """An ordinary image file of any size (past the single-image limit), decoded once."""

    def __init__(self, path: Path) -> None:
        if is_dicom(path):  # a DICOM image that is not a whole-slide one: as a viewer shows it
            self.image = load_image(path)
        else:
            with Image.open(path) as image:
                w, h = image.size
                if w * h > MAX_PLAIN_PIXELS:
                    raise ImageError(
                        f"{path.name} is {w}x{h} pixels, more than a non-pyramidal image can be read whole "
                        f"({MAX_PLAIN_PIXELS / 1e9:.0f} gigapixel); save it as a pyramidal TIFF"
                    )
                self.image = ImageOps.exif_transpose(image.convert("RGB"))
        self.dimensions = self.image.size
        self.mpp = None

    def read(self, x: int, y: int, size: int, out: int) -> Image.Image:
        tile = self.image.crop((x, y, x + size, y + size))  # beyond the edge: black, as an empty field
        return tile if size == out else tile.resize((out, out), Image.BILINEAR, reducing_gap=2.0)

    def thumbnail(self, side: int) -> Image.Image:
        thumb = self.image.copy()
        thumb.thumbnail((side, side), Image.BILINEAR)
        return thumb


def open_slide(path: str | Path) -> SlideReader:
    """A reader for ``path``: OpenSlide for the slide formats it knows, PIL for any other image file."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path.name} is empty (0 bytes)")
    import openslide

    try:
        if openslide.OpenSlide.detect_format(str(path)) not in (None, "generic-tiff") or _tiled_tiff(path):
            return OpenSlideReader(openslide.OpenSlide(str(path)))
    except openslide.OpenSlideError as e:
        raise ImageError(f"{path.name} is an unreadable slide: {e}") from None
    previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, MAX_PLAIN_PIXELS
    try:
        return PlainImageReader(path)
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 - PIL raises many kinds for corrupt or unknown files
        raise ImageError(f"{path.name} is not an image or slide file we can read ({type(e).__name__})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _tiled_tiff(path: Path) -> bool:
    """A generic TIFF that OpenSlide reads (tiled); a striped TIFF is an ordinary image."""
    import openslide

    return openslide.OpenSlide.detect_format(str(path)) == "generic-tiff"


def tissue_mask(thumbnail: Image.Image) -> np.ndarray:
    """Boolean (H, W) mask of tissue: saturation above Otsu's threshold (at least ``MIN_SATURATION``)."""
    hsv = np.asarray(thumbnail.convert("HSV"), dtype=np.float64)
    saturation = hsv[..., 1] / 255
    histogram, edges = np.histogram(saturation, bins=256, range=(0, 1))
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(histogram)
    mean = np.cumsum(histogram * centres)
    total, total_mean = weight[-1], mean[-1]
    between = (total_mean * weight - mean * total) ** 2 / np.maximum(weight * (total - weight), 1e-12)
    threshold = max(float(centres[int(np.argmax(between[:-1]))]), MIN_SATURATION)
    return saturation > threshold


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
        share = lambda n, d: round(n / d, 4) if d else None  # noqa: E731
        ranked = sorted(answered, key=lambda t: -t.p_malignant)[:top]
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
        tile_size: tile side in level-0 pixels; default: the model's ``tile_size``, converted with the
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
        """The tile side in the slide's level-0 pixels that shows what a training tile showed."""
        if self.tile_size:
            return self.tile_size
        slide_mpp = self.mpp or reader.mpp
        if self.config.tile_mpp and slide_mpp:
            return max(8, round(self.config.tile_size * self.config.tile_mpp / slide_mpp))
        return self.config.tile_size or self.config.input_size

    def predict(self, path: str | Path, progress: bool = False) -> SlideResult:
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
        for y in range(0, max(height - size, 0) + 1, stride):
            for x in range(0, max(width - size, 0) + 1, stride):
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
        model = self.config.training.get("task") or self.config.architecture
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
        """Grad-CAM maps of the ``k`` tiles most likely malignant, into ``result.explanations``."""
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


def heatmap_image(result: SlideResult) -> Image.Image:
    """An RGBA image the size of the thumbnail: each tissue tile coloured by its probability (blue benign to
    red malignant; uncertain tiles orange), refused tiles near-black, background transparent."""
    thumb = result.thumbnail
    sx, sy = thumb.width / result.dimensions[0], thumb.height / result.dimensions[1]
    canvas = np.zeros((thumb.height, thumb.width, 4), dtype=np.uint8)
    blue, red = np.array(COLOURS["benign"]), np.array(COLOURS["malignant"])
    # Overlapping tiles: later ones paint over earlier ones; fine at the thumbnail's scale.
    for t in result.tiles:
        if t.status == BACKGROUND:
            continue
        if t.status == REFUSED:
            colour = COLOURS[REFUSED]
        elif t.status == UNCERTAIN:
            colour = COLOURS[UNCERTAIN]
        else:
            colour = tuple((blue + (red - blue) * t.p_malignant).round().astype(int))
        side = min(t.size, result.stride)  # the stride: overlapping tiles do not hide their neighbours
        x0, y0 = int(t.x * sx), int(t.y * sy)
        x1, y1 = max(int((t.x + side) * sx), x0 + 1), max(int((t.y + side) * sy), y0 + 1)
        canvas[y0:y1, x0:x1] = (*colour, 255)
    return Image.fromarray(canvas, "RGBA")


def geojson(result: SlideResult) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of the tissue tiles in level-0 pixel coordinates, as QuPath imports it."""
    features = []
    for t in result.tiles:
        if t.status == BACKGROUND:
            continue
        x0, y0, x1, y1 = t.x, t.y, t.x + t.size, t.y + t.size
        measurements = {"tissue": t.tissue}
        if t.p_malignant is not None:
            measurements["p_malignant"] = t.p_malignant
        if t.unusualness is not None:
            measurements["unusualness"] = t.unusualness
        features.append(
            {
                "type": "Feature",
                "id": f"tile-{t.x}-{t.y}",
                "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]},
                "properties": {
                    "objectType": "tile",
                    "classification": {"name": t.status, "color": list(COLOURS.get(t.status, COLOURS[UNCERTAIN]))},
                    "measurements": measurements,
                    "isLocked": True,
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def write_outputs(result: SlideResult, out: Path) -> dict[str, Path]:
    """The heatmap, overlay, tile CSV, GeoJSON and summary of ``result`` in ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(result.name).stem
    paths = {
        "heatmap": out / f"{stem}.heatmap.png",
        "overlay": out / f"{stem}.overlay.png",
        "csv": out / f"{stem}.tiles.csv",
        "geojson": out / f"{stem}.geojson",
        "summary": out / f"{stem}.summary.json",
    }
    heat = heatmap_image(result)
    heat.save(paths["heatmap"])
    base = result.thumbnail.convert("RGBA")
    faded = heat.copy()
    faded.putalpha(heat.getchannel("A").point(lambda a: int(a * 0.5)))
    Image.alpha_composite(base, faded).convert("RGB").save(paths["overlay"])
    with open(paths["csv"], "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        blank = lambda value: "" if value is None else value  # noqa: E731
        for t in result.tiles:
            writer.writerow(
                [t.x, t.y, t.size, t.size, t.tissue, t.status]
                + [blank(t.p_malignant), blank(t.in_distribution), blank(t.unusualness)]
            )
    paths["geojson"].write_text(json.dumps(geojson(result)))
    paths["summary"].write_text(json.dumps(result.summary(), indent=2))
    for key, image in result.explanations.items():
        paths[f"gradcam_{key}"] = out / f"{stem}.gradcam_{key}.png"
        image.save(paths[f"gradcam_{key}"])
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cancer_models.slides", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("files", nargs="+", type=Path, help="slides or large images")
    parser.add_argument("--model", required=True, help="model folder or Hub repo id")
    parser.add_argument("--out", required=True, type=Path, help="folder for the outputs")
    parser.add_argument("--tile-size", type=int, default=None, help="tile side in level-0 pixels (default: model's)")
    parser.add_argument("--mpp", type=float, default=None, help="the slides' microns per pixel (default: their own)")
    parser.add_argument("--overlap", type=float, default=0.0, help="share of a tile its neighbours overlap")
    parser.add_argument("--min-tissue", type=float, default=MIN_TISSUE, help="tissue share a tile needs")
    parser.add_argument("--explain", type=int, default=0, metavar="K", help="Grad-CAM of the K top tiles")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    try:
        predictor = Predictor(load_pretrained(args.model), batch_size=args.batch_size)
        slides = SlidePredictor(predictor, args.tile_size, args.mpp, args.overlap, args.min_tissue, args.batch_size)
    except (CheckpointError, ConfigError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = 0
    for path in args.files:
        try:
            result = slides.predict(path, progress=True)
            if args.explain:
                slides.explain_top(result, path, args.explain)
            write_outputs(result, args.out)
            print(json.dumps(result.summary()))
        except ImageError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
