"""Images no model may accept, made here from a seed: the negatives the domain check learns from (``fit_rejection``).

Everything is drawn by this module with numpy and PIL's shape drawing (no fonts, no files): the same seed gives
the same images whatever else is installed, so refitting a model gives the same limits. Two families:

- *scenes*: photograph-like compositions (a sky over textured ground with buildings or objects, fractal clouds
  and terrain, fur- and foliage-like textures, blurred blobs, gratings), whole and as random square crops, which
  stand in for the everyday photographs people upload by mistake;
- *generated*: plain noise, flat colours, gradients, shapes and text-like strokes.

None of them is in the foreign development set the shipped models are judged on (``benchmarks/foreign_images.py``
takes scikit-image's, matplotlib's and pydicom's images), and no image that ships inside another package is used.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from ..data.images import prepare_image, to_uint8_tensor

KINDS = ("uniform noise", "gaussian noise", "flat colour", "gradient", "ellipses", "rectangles", "strokes")
SCENES = ("landscape", "city", "clouds", "fur", "foliage", "objects", "gratings")
SCENE_SIDE = 384  # scenes are drawn this large, then cropped: a crop of a sixth of it is a close-up


def fractal_noise(rng: np.random.Generator, side: int, slope: float) -> np.ndarray:
    """A (side, side) field in [0, 1] whose power falls as 1 / frequency^``slope``: natural-looking texture (2-3:
    clouds, terrain; 1-1.5: grain, fur)."""
    fy, fx = np.meshgrid(np.fft.fftfreq(side), np.fft.fftfreq(side), indexing="ij")
    amplitude = 1 / np.maximum(np.hypot(fx, fy), 1 / side) ** (slope / 2)
    phase = np.exp(2j * np.pi * rng.random((side, side)))
    field = np.fft.ifft2(amplitude * phase).real
    return (field - field.min()) / (np.ptp(field) or 1)


def _palette(rng: np.random.Generator, values: np.ndarray, colours: int = 3) -> np.ndarray:
    """``values`` in [0, 1] mapped through a random palette of ``colours`` stops: (H, W, 3) uint8."""
    stops = np.sort(rng.random(colours))
    stops[0], stops[-1] = 0.0, 1.0
    rgb = rng.integers(0, 256, (colours, 3))
    channels = [np.interp(values, stops, rgb[:, c]) for c in range(3)]
    return np.stack(channels, axis=-1).clip(0, 255).astype(np.uint8)


def scene(kind: str, rng: np.random.Generator, side: int = SCENE_SIDE) -> Image.Image:
    """One photograph-like image of ``kind`` (one of ``SCENES``)."""
    if kind in ("clouds", "foliage"):
        slope = rng.uniform(2.5, 3.2) if kind == "clouds" else rng.uniform(1.6, 2.2)
        return Image.fromarray(_palette(rng, fractal_noise(rng, side, slope), int(rng.integers(2, 5))))
    if kind == "fur":  # hairs: fine grain stretched along one direction, then turned
        big = int(side * 1.5)
        grain = Image.fromarray(_palette(rng, fractal_noise(rng, big, rng.uniform(0.8, 1.4)), 3))
        hairs = grain.resize((big, big // int(rng.integers(6, 16)))).resize((big, big), Image.BILINEAR)
        turned = hairs.rotate(float(rng.uniform(0, 180)), Image.BILINEAR)
        margin = (big - side) // 2
        return turned.crop((margin, margin, margin + side, margin + side))
    if kind in ("landscape", "city"):
        horizon = int(rng.integers(side // 4, 3 * side // 4))
        sky = np.linspace(rng.integers(100, 256, 3), rng.integers(150, 256, 3), horizon)[:, None, :]
        ground = _palette(rng, fractal_noise(rng, side, rng.uniform(1.5, 2.5)), 3)[horizon:]
        image = Image.fromarray(np.concatenate([np.repeat(sky, side, 1).astype(np.uint8), ground]))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(3, 12)) if kind == "city" else 0):  # buildings with windows
            w, h = int(rng.integers(side // 12, side // 4)), int(rng.integers(side // 8, horizon))
            x = int(rng.integers(0, side - w))
            draw.rectangle([x, horizon - h, x + w, horizon + side // 20], fill=tuple(rng.integers(40, 220, 3).tolist()))
            for wy in range(horizon - h + 6, horizon - 6, 14):
                for wx in range(x + 4, x + w - 8, 12):
                    draw.rectangle([wx, wy, wx + 5, wy + 7], fill=tuple(rng.integers(0, 256, 3).tolist()))
        return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.2))))
    if kind == "objects":  # soft-edged things on a textured background
        image = Image.fromarray(_palette(rng, fractal_noise(rng, side, 2.0), 2))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(2, 9))):
            (x0, x1), (y0, y1) = np.sort(rng.integers(0, side, (2, 2)), axis=1).tolist()
            draw.ellipse([x0, y0, x1 + 8, y1 + 8], fill=tuple(rng.integers(0, 256, 3).tolist()))
        return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 3))))
    if kind == "gratings":
        y, x = np.mgrid[0:side, 0:side] / side
        angle, frequency = rng.uniform(0, np.pi), rng.uniform(3, 40)
        wave = 0.5 + 0.5 * np.sin(2 * np.pi * frequency * (x * np.cos(angle) + y * np.sin(angle)))
        return Image.fromarray(_palette(rng, wave, 2))
    raise ValueError(f"unknown scene {kind!r}; choose from {SCENES}")


def generated(kind: str, rng: np.random.Generator, size: int = 160) -> Image.Image:
    """One generated image of ``kind`` (one of ``KINDS``)."""
    colour = lambda: tuple(rng.integers(0, 256, 3).tolist())
    if kind == "uniform noise":
        return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    if kind == "gaussian noise":
        return Image.fromarray(np.clip(rng.normal(128, rng.uniform(10, 80), (size, size, 3)), 0, 255).astype(np.uint8))
    if kind == "flat colour":
        return Image.new("RGB", (size, size), colour())
    if kind == "gradient":
        t = np.linspace(0, 1, size)[None, :, None]
        c0, c1 = rng.integers(0, 256, (2, 3))
        return Image.fromarray((c0 + (c1 - c0) * t).repeat(size, 0).astype(np.uint8))
    if kind in ("ellipses", "rectangles"):
        image = Image.new("RGB", (size, size), colour())
        draw = ImageDraw.Draw(image)
        for _ in range(rng.integers(1, 8)):
            (x0, x1), (y0, y1) = np.sort(rng.integers(0, size, (2, 2)), axis=1).tolist()
            (draw.ellipse if kind == "ellipses" else draw.rectangle)([x0, y0, x1, y1], fill=colour())
        return image
    if kind == "strokes":  # lines of glyph-like strokes, dark on light, as a page of text looks
        image = Image.new("RGB", (size, size), tuple(rng.integers(200, 256, 3).tolist()))
        draw, ink = ImageDraw.Draw(image), tuple(rng.integers(0, 80, 3).tolist())
        height = int(rng.integers(6, 16))
        for top in range(4, size - height, int(height * 1.6)):
            x = 4
            while x < size - height:
                for _ in range(int(rng.integers(1, 4))):
                    points = (rng.integers(0, height, 4) + [x, top, x, top]).tolist()
                    draw.line(points, fill=ink, width=1 + height // 8)
                x += int(height * rng.uniform(0.6, 1.0)) + (height if rng.random() < 0.2 else 0)
        return image
    raise ValueError(f"unknown kind {kind!r}; choose from {KINDS}")


def random_crop(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A square crop of a sixth to all of ``photo``'s shorter side, anywhere in it."""
    w, h = photo.size
    side = int(rng.integers(min(w, h) // 6, min(w, h) + 1))
    x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    return photo.crop((x, y, x + side, y + side))


def reference_negatives(
    size: int, preprocessing: str = "none", per_scene: int = 2, crops: int = 120, per_kind: int = 20, seed: int = 0
) -> tuple[torch.Tensor, dict]:
    """A uint8 batch (N, 3, size, size) of ``per_scene`` scenes of each kind (each whole and as ``crops``
    crops) and ``per_kind`` generated images of each kind, each through the model's ``preprocessing`` as a
    model would see it, and how many of each family were made.

    Many crops, because what a classifier learns from a few dozen depends on which ones were drawn: with 24
    crops a photograph the dermoscopy model should refuse was refused or not from one draw to the next."""
    rng = np.random.default_rng(seed)
    images = []
    for kind in SCENES:
        for _ in range(per_scene):
            image = scene(kind, rng)
            images += [image, *(random_crop(image, rng) for _ in range(crops))]
    scenes = len(images)
    images += [generated(kind, rng) for kind in KINDS for _ in range(per_kind)]
    batch = torch.stack([to_uint8_tensor(prepare_image(image, preprocessing), size) for image in images])
    return batch, {"scenes": scenes, "generated": len(images) - scenes}
