"""Slides: tiles per second through the whole pipeline (reading, tissue detection, inference) against the model
step alone on the same tiles, and peak anonymous memory, on synthetic pyramidal TIFFs of growing size.

    python benchmarks/slides.py [--sides 10000 20000] [--tile 160]

Each slide is written tile by tile (never whole in memory): a grid of the fixture histopathology tiles with
a third of it left as blank glass, three pyramid levels, zlib-compressed 256-pixel TIFF tiles; OpenSlide reads
it. Memory is the process's anonymous resident memory (RssAnon), sampled every 50 ms while the slide is
analysed, less what it was before. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _common import command, machine

from cancer_models import Predictor, load_pretrained
from cancer_models.data.images import to_uint8_tensor
from cancer_models.inference.slides import SlidePredictor

FIXTURES = ROOT / "tests" / "fixtures" / "histopathology"
TIFF_TILE = 256


def write_slide(path: Path, side: int, cell: int) -> None:
    tiles = [np.asarray(Image.open(p).convert("RGB").resize((cell, cell))) for p in sorted(FIXTURES.rglob("*.jpg"))]
    atlas = np.stack([*tiles, np.full((cell, cell, 3), 244, np.uint8)])  # the last one: blank glass
    glass = len(tiles)

    def pixel(level: int, ty: int, tx: int) -> np.ndarray:
        """A TIFF tile of ``level`` (each level halves the previous one), built from the cell grid."""
        ys = (ty * TIFF_TILE + np.arange(TIFF_TILE)) * 2**level
        xs = (tx * TIFF_TILE + np.arange(TIFF_TILE)) * 2**level
        cy, cx = (ys // cell)[:, None], (xs // cell)[None, :]
        index = np.where((cx * 7 + cy * 3) % 3 == 0, glass, (cx + cy * 5) % glass)  # a third is glass
        block = atlas[index, (ys % cell)[:, None], (xs % cell)[None, :]]
        block[(ys >= side)[:, None] | (xs >= side)[None, :]] = 0
        return block

    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for level in range(3):
            size = -(-side // 2**level)
            n = -(-size // TIFF_TILE)
            gen = (pixel(level, ty, tx) for ty in range(n) for tx in range(n))
            tif.write(gen, shape=(size, size, 3), dtype=np.uint8, tile=(TIFF_TILE, TIFF_TILE), compression="zlib",
                      photometric="rgb", subfiletype=int(level > 0))  # fmt: skip


def anonymous_memory() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakMemory:
    def __enter__(self):
        self.base, self.peak, self.running = anonymous_memory(), 0, True
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self) -> None:
        while self.running:
            self.peak = max(self.peak, anonymous_memory())
            time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        self.running = False
        self.thread.join()


def model_step_rate(predictor: Predictor, reader_tiles: list[np.ndarray], repeats: int = 3) -> float:
    """Tiles per second of ``Predictor.analyse`` alone on decoded tiles, in the same batches."""
    size = predictor.config.input_size
    batch = torch.stack([to_uint8_tensor(Image.fromarray(t), size) for t in reader_tiles])
    predictor.analyse(batch[:8])  # warm-up
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(batch), predictor.batch_size):
            predictor.analyse(batch[i : i + predictor.batch_size])
        best = max(best, len(batch) / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sides", type=int, nargs="+", default=[10000, 20000])
    parser.add_argument("--tile", type=int, default=160)
    parser.add_argument("--model", default=str(ROOT / "models" / "histopathology-cancer-cnn"))
    args = parser.parse_args()
    predictor = Predictor(load_pretrained(args.model), batch_size=64)
    slides = SlidePredictor(predictor, tile_size=args.tile, batch_size=64)
    report = {"benchmark": "slides", "command": command(), "machine": machine(), "tile": args.tile, "slides": []}
    with tempfile.TemporaryDirectory() as tmp:
        for side in args.sides:
            path = Path(tmp) / f"slide{side}.tif"
            start = time.perf_counter()
            write_slide(path, side, args.tile)
            written = time.perf_counter() - start
            with PeakMemory() as memory:
                start = time.perf_counter()
                result = slides.predict(path)
                elapsed = time.perf_counter() - start
            summary = result.summary()
            from cancer_models.data.slides import open_slide

            reader = open_slide(path)
            answered = [t for t in result.tiles if t.status != "background"][:1024]
            sample = [np.asarray(reader.read(t.x, t.y, t.size, predictor.config.input_size)) for t in answered]
            reader.close()
            step = model_step_rate(predictor, sample)
            rate = summary["tissue_tiles"] / elapsed
            report["slides"].append(
                {
                    "side": side,
                    "file_mb": round(path.stat().st_size / 1e6, 1),
                    "write_s": round(written, 1),
                    "tiles": summary["tiles"],
                    "tissue_tiles": summary["tissue_tiles"],
                    "seconds": round(elapsed, 1),
                    "pipeline_tiles_per_s": round(rate, 1),
                    "model_step_tiles_per_s": round(step, 1),
                    "pipeline_share_of_model_step": round(rate / step, 3),
                    "peak_anonymous_memory_mb": round((memory.peak - memory.base) / 1e6, 1),
                }
            )
            print(json.dumps(report["slides"][-1]), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
