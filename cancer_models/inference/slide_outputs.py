"""What a slide's analysis leaves on disk: a heatmap and overlay over its thumbnail, a tile CSV, QuPath GeoJSON
and a summary.

``write_outputs`` writes, per file: ``<name>.heatmap.png`` (tile probabilities over the thumbnail),
``<name>.overlay.png``, ``<name>.tiles.csv``, ``<name>.geojson`` (tile polygons in level-0 pixels with their
decision, colour and measurements, for QuPath's *File > Import objects from file*) and ``<name>.summary.json``;
and the Grad-CAM maps of the tiles ``SlidePredictor.explain_top`` explained.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .predict import UNCERTAIN
from .slides import BACKGROUND, COLOURS, REFUSED, SlideResult

CSV_COLUMNS = ["x", "y", "width", "height", "tissue", "decision", "p_malignant", "in_distribution", "unusualness"]


CSV_COLUMNS = ["x", "y", "width", "height", "tissue", "decision", "p_malignant", "in_distribution", "unusualness"]


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
