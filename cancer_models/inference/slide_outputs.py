"""What a slide's analysis leaves on disk: a heatmap and overlay over its thumbnail, a tile CSV, QuPath GeoJSON
and a summary.

``write_outputs`` writes, per file: ``<name>.heatmap.png`` (tile probabilities at the thumbnail's size,
background grey) and ``<name>.overlay.png`` (the thumbnail tinted by them), each with a legend strip below,
``<name>.tiles.csv``, ``<name>.geojson`` (tile polygons in level-0 pixels with their
decision, colour and measurements, for QuPath's *File > Import objects from file*) and ``<name>.summary.json``;
and the Grad-CAM maps of the tiles ``SlidePredictor.explain_top`` explained.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .predict import UNCERTAIN
from .slides import BACKGROUND, COLOURS, REFUSED, SlideResult

CSV_COLUMNS = ["x", "y", "width", "height", "tissue", "decision", "p_malignant", "in_distribution", "unusualness"]


def heatmap_image(result: SlideResult, opacity: float = 1.0, refused_opacity: float = 1.0) -> Image.Image:
    """An RGBA image the size of the thumbnail: tissue coloured by P(malignant) (blue benign to red malignant) at
    ``opacity``, averaged over the answered tiles that overlap there; orange where every answer there is
    uncertain; near-black at ``refused_opacity`` where tiles were refused and none was answered; background
    transparent (``legend`` says which is which)."""
    thumb = result.thumbnail
    sx, sy = thumb.width / result.dimensions[0], thumb.height / result.dimensions[1]
    p_sum, answers, uncertain = (np.zeros((thumb.height, thumb.width)) for _ in range(3))
    refused = np.zeros((thumb.height, thumb.width), dtype=bool)
    for t in result.tiles:
        if t.status == BACKGROUND:
            continue
        x0, y0 = int(t.x * sx), int(t.y * sy)
        area = np.s_[y0 : max(int((t.y + t.size) * sy), y0 + 1), x0 : max(int((t.x + t.size) * sx), x0 + 1)]
        if t.status == REFUSED:
            refused[area] = True
            continue
        p_sum[area] += t.p_malignant
        answers[area] += 1
        uncertain[area] += t.status == UNCERTAIN
    canvas = np.zeros((thumb.height, thumb.width, 4), dtype=np.uint8)
    answered = answers > 0
    canvas[answered, :3] = probability_colours(p_sum[answered] / answers[answered])
    canvas[answered, 3] = round(255 * opacity)
    canvas[answered & (uncertain == answers), :3] = COLOURS[UNCERTAIN]
    only_refused = refused & ~answered  # an answer where tiles overlap says more than a refusal beside it
    canvas[only_refused] = (*COLOURS[REFUSED], round(255 * refused_opacity))
    return Image.fromarray(canvas, "RGBA")


OVERLAY_OPACITY = 0.5  # answered tiles over the thumbnail: the tissue stays visible under its colour
REFUSED_OPACITY = 0.9  # refused tiles: nearly solid, never mistaken for a faint probability


def probability_colours(p: np.ndarray) -> np.ndarray:
    """The heatmap's colours (..., 3) of P(malignant) = ``p``: blue (0) to red (1)."""
    blue, red = np.array(COLOURS["benign"]), np.array(COLOURS["malignant"])
    return (blue + (red - blue) * np.asarray(p, dtype=float)[..., None]).round().astype(np.uint8)


def probability_colour(p: float) -> tuple[int, int, int]:
    """The heatmap's colour of P(malignant) = ``p``: blue (0) to red (1)."""
    return tuple(int(v) for v in probability_colours(p))


def legend(width: int) -> Image.Image:
    """A strip (``width`` wide) that names the map's colours: the P(malignant) scale, uncertain, refused and
    background."""
    height, font = 44, ImageFont.load_default()
    strip = Image.new("RGB", (max(width, 360), height), "white")
    draw = ImageDraw.Draw(strip)
    bar = 100
    for i in range(bar):
        draw.line([(8 + i, 6), (8 + i, 20)], fill=probability_colour(i / (bar - 1)))
    draw.text((8, 24), "P(malignant) 0", fill="black", font=font)
    draw.text((8 + bar - 6, 24), "1", fill="black", font=font)
    x = 8 + bar + 16
    for status, name in ((UNCERTAIN, "uncertain"), (REFUSED, "refused: not recognised"), (BACKGROUND, "no tissue")):
        draw.rectangle([x, 6, x + 14, 20], fill=COLOURS[status], outline="black")
        draw.text((x, 24), name, fill="black", font=font)
        x += max(70, int(draw.textlength(name, font=font)) + 12)
    return strip


def with_legend(image: Image.Image) -> Image.Image:
    """``image`` with the legend strip below it."""
    strip = legend(image.width)
    out = Image.new("RGB", (max(image.width, strip.width), image.height + strip.height), "white")
    out.paste(image.convert("RGB"), (0, 0))
    out.paste(strip, (0, image.height))
    return out


def overlay_image(result: SlideResult) -> Image.Image:
    """The thumbnail with answered tiles tinted by their colour and refused tiles nearly solid; background is
    left as it is."""
    tinted = heatmap_image(result, OVERLAY_OPACITY, REFUSED_OPACITY)
    return Image.alpha_composite(result.thumbnail.convert("RGBA"), tinted).convert("RGB")


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
    """Write what a pathologist's tools open: the heatmap, overlay, tile CSV, GeoJSON (QuPath) and summary.

    Args:
        result: a ``SlidePredictor.predict`` result.
        out: the folder to write into (created).

    Returns:
        The written files by kind (``heatmap``, ``overlay``, ``csv``, ``geojson``, ``summary``, ``gradcam_*``).
    """
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
    opaque = Image.alpha_composite(Image.new("RGBA", heat.size, (*COLOURS[BACKGROUND], 255)), heat)
    with_legend(opaque).save(paths["heatmap"])
    with_legend(overlay_image(result)).save(paths["overlay"])
    with open(paths["csv"], "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        blank = lambda value: "" if value is None else value
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
