"""How a model holds up under acquisition shift: a test split re-scored under controlled changes of the images,
like a corruption benchmark (Hendrycks & Dietterich, 2019), each at the model's own threshold.

Shifts: magnification (zoom in by cropping the centre; zoom out by shrinking and mirroring the borders, since
a field of view cannot be widened after the fact), JPEG re-compression, blur, brightness, contrast, and for
H&E a stain change (the optical density of haematoxylin and eosin scaled in opposite directions).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter

from ..data.augment import RGB_FROM_HED
from ..data.images import load_image, to_uint8_tensor
from ..inference.predict import Predictor
from .metrics import binary_metrics


def zoom(image: Image.Image, factor: float) -> Image.Image:
    """``factor`` > 1: the centre 1/factor of the image, enlarged; < 1: the image shrunk by ``factor`` with its
    borders mirrored around it. The size stays the same."""
    w, h = image.size
    if factor >= 1:
        cw, ch = round(w / factor), round(h / factor)
        left, top = (w - cw) // 2, (h - ch) // 2
        return image.crop((left, top, left + cw, top + ch)).resize((w, h), Image.BILINEAR)
    small = np.asarray(image.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.BILINEAR))
    pad_y, pad_x = h - small.shape[0], w - small.shape[1]
    padded = np.pad(small, ((pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2), (0, 0)), "symmetric")
    return Image.fromarray(padded)


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def restain(image: Image.Image, haematoxylin: float, eosin: float) -> Image.Image:
    """Scale each stain's optical density (Ruifrok & Johnston's H&E vectors): another lab's staining."""
    rgb_from_hed = RGB_FROM_HED.double().numpy()
    density = -np.log(np.clip(np.asarray(image, dtype=np.float64) / 255, 1e-6, 1))
    stains = density @ np.linalg.inv(rgb_from_hed) * np.array([haematoxylin, eosin, 1.0])
    return Image.fromarray((np.exp(-(stains @ rgb_from_hed)) * 255).clip(0, 255).round().astype(np.uint8))


SHIFTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "none": lambda im: im,
    "zoom in 1.5x": lambda im: zoom(im, 1.5),
    "zoom in 2x": lambda im: zoom(im, 2.0),
    "zoom in 3x": lambda im: zoom(im, 3.0),
    "zoom out 1.5x": lambda im: zoom(im, 1 / 1.5),
    "zoom out 2x": lambda im: zoom(im, 0.5),
    "zoom out 3x": lambda im: zoom(im, 1 / 3),
    "jpeg quality 30": lambda im: jpeg(im, 30),
    "jpeg quality 10": lambda im: jpeg(im, 10),
    "blur radius 1": lambda im: im.filter(ImageFilter.GaussianBlur(1)),
    "blur radius 2": lambda im: im.filter(ImageFilter.GaussianBlur(2)),
    "brightness 0.7": lambda im: ImageEnhance.Brightness(im).enhance(0.7),
    "brightness 1.3": lambda im: ImageEnhance.Brightness(im).enhance(1.3),
    "contrast 0.7": lambda im: ImageEnhance.Contrast(im).enhance(0.7),
    "contrast 1.3": lambda im: ImageEnhance.Contrast(im).enhance(1.3),
    "stain: more haematoxylin": lambda im: restain(im, 1.3, 0.8),
    "stain: more eosin": lambda im: restain(im, 0.8, 1.3),
}


def shift_report(
    predictor: Predictor,
    paths: Sequence[str | Path],
    targets: Sequence[int],
    groups: Sequence[str],
    shifts: Sequence[str] = tuple(SHIFTS),
    n_bootstrap: int = 200,
) -> dict[str, dict[str, Any]]:
    """AUC, sensitivity and specificity (95% group-bootstrap intervals) of ``predictor`` on the images under
    each shift, at the model's threshold."""
    unknown = sorted(set(shifts) - set(SHIFTS))
    if unknown:
        raise ValueError(f"unknown shift(s) {unknown}; known: {list(SHIFTS)}")
    images = [load_image(p) for p in paths]
    size, report = predictor.config.input_size, {}
    for name in shifts:
        batch = torch.stack([to_uint8_tensor(predictor.prepare(SHIFTS[name](im)), size) for im in images])
        probs = predictor.probabilities(batch)[:, 1].numpy()
        m = binary_metrics(targets, probs, predictor.config.threshold, groups, n_bootstrap=n_bootstrap)
        report[name] = {
            k: m[k] for k in ("auc", "auc_ci", "sensitivity", "sensitivity_ci", "specificity", "specificity_ci")
        }
    return report
