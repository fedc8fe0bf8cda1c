"""Images no model may accept, made on the spot: the negatives the domain check learns from (``fit_rejection``).

Photographs that ship inside Python packages (scikit-learn's, and gradio's where it is installed: animals,
fur, buildings, faces, a bus), whole and as random square crops, and generated images (noise, flat colours,
gradients, shapes, text). None of them is in the foreign development set the shipped models are judged on
(``benchmarks/foreign_images.py`` takes scikit-image's, matplotlib's and pydicom's images).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..data.images import to_uint8_tensor

KINDS = ("uniform noise", "gaussian noise", "flat colour", "gradient", "ellipses", "rectangles", "text")
PHOTOGRAPHS = {
    "sklearn": ("datasets/images/china.jpg", "datasets/images/flower.jpg"),
    "gradio": tuple(
        f"media_assets/images/{name}"
        for name in ("cheetah.jpg", "cheetah1.jpg", "lion.jpg", "tower.jpg", "bus.png", "groot.jpeg", "avatar.png")
    ),
}


def photograph_files() -> list[Path]:
    """The package photographs installed here (scikit-learn's always, with the training extra)."""
    files = []
    for package, names in PHOTOGRAPHS.items():
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(next(iter(spec.submodule_search_locations)))
        files += [root / name for name in names if (root / name).is_file()]
    return files


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
    if kind == "text":
        image = Image.new("RGB", (size, size), "white")
        lines = ["".join(rng.choice(list("abcdefghijklmnop "), 20)) for _ in range(8)]
        ImageDraw.Draw(image).multiline_text((5, 5), "\n".join(lines), fill="black")
        return image
    raise ValueError(f"unknown kind {kind!r}; choose from {KINDS}")


def random_crop(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A square crop of a sixth to all of ``photo``'s shorter side, anywhere in it."""
    w, h = photo.size
    side = int(rng.integers(min(w, h) // 6, min(w, h) + 1))
    x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    return photo.crop((x, y, x + side, y + side))


def reference_negatives(size: int, crops: int = 200, per_kind: int = 20, seed: int = 0) -> tuple[torch.Tensor, dict]:
    """A uint8 batch (N, 3, size, size) of package photographs (each whole and as ``crops`` crops) and
    ``per_kind`` generated images of each kind, and how many of each were made.

    Many crops, because what a classifier learns from a few dozen depends on which ones were drawn: with 24
    crops a photograph the dermoscopy model should refuse was refused or not from one draw to the next."""
    rng = np.random.default_rng(seed)
    images = []
    for file in photograph_files():
        photo = Image.open(file).convert("RGB")
        images += [photo, *(random_crop(photo, rng) for _ in range(crops))]
    photographs = len(images)
    images += [generated(kind, rng) for kind in KINDS for _ in range(per_kind)]
    batch = torch.stack([to_uint8_tensor(image, size) for image in images])
    return batch, {"photographs": photographs, "generated": len(images) - photographs}
