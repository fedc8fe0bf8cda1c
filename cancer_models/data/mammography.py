"""Screening mammograms in one canonical form, before a model sees them (training, evaluation, the app alike).

A mammogram arrives with the breast on either side, on a black or (inverted) white background, with burned-in
labels and markers beside it, and, in the public releases, stretched to a square. The canonical form:

1. **Grey levels as a viewer shows them, dark background**: an image whose border is mostly bright is inverted
   (a MONOCHROME1 file is already inverted by the DICOM reader).
2. **The breast found**: grey level above Otsu's threshold (kept within 6-24 of 255: fat is dark too), opened
   over 5 x 5 pixels to cut thin labels and markers off it, the largest connected part, its holes filled.
   Everything else is set to black: labels, markers, scanner text.
3. **One side**: chest wall on the left, nipple to the right, from the DICOM file's patient orientation where it
   gives one, else from where the breast lies (most of it in the left half).
4. **Cropped to the breast and padded to a square** with black on the nipple side and evenly above and below, so
   that resizing to the model's input keeps the proportions the crop has.

Applied twice it changes nothing (the result is already dark, one-sided and cropped), so a shown or saved
canonical image can be analysed again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage

MIN_BREAST_SHARE = 0.02  # a "breast" smaller than this share of the image is none: the image is left as it is
THRESHOLD_RANGE = (6, 24)  # Otsu's threshold on 0-255 grey, kept in this range: fatty tissue is dark too
VIEWS = ("CC", "MLO")  # the two screening views; a file name that carries one as a word names its view
FRAME = 0.02  # the border frame, as a share of the shorter side, that tells a dark background from a bright one


@dataclass(frozen=True)
class Mammogram:
    """A mammogram in canonical form, and what was done to get there."""

    image: Image.Image  # RGB, square, dark background, chest wall on the left
    inverted: bool  # the grey levels were inverted (a bright background)
    flipped: bool  # mirrored left to right
    box: tuple[int, int, int, int] | None  # (left, top, right, bottom) of the breast in the input; None: not found


def canonical_mammogram(image: Image.Image, chest_wall: str | None = None) -> Mammogram:
    """``image`` (any mode) in the canonical form described above.

    Args:
        image: a mammogram, as a viewer shows it.
        chest_wall: "left" or "right" where the file says on which side of the image the chest wall is (a DICOM
            file's patient orientation); None: judged from where the breast lies.

    Returns:
        The canonical image and the steps taken. Where no breast is found (a blank or foreign image), the image
        is returned as it came, only made RGB and square-padded, for the rejection check to judge.
    """
    rgb = np.asarray(image.convert("RGB"))
    grey = np.asarray(image.convert("L"))
    inverted = _bright_background(grey)
    if inverted:
        rgb, grey = 255 - rgb, 255 - grey
    mask = breast_mask(grey)
    if mask.sum() < MIN_BREAST_SHARE * mask.size:
        return Mammogram(_square(Image.fromarray(rgb)), inverted, False, None)
    columns = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    box = (int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1)
    if chest_wall is not None:
        flipped = chest_wall == "right"
    else:  # the chest wall is where most of the breast is
        flipped = mask[:, mask.shape[1] // 2 :].sum() > mask[:, : mask.shape[1] // 2].sum()
    breast = np.where(mask[..., None], rgb, 0).astype(np.uint8)
    crop = Image.fromarray(breast).crop(box)
    if flipped:
        crop = ImageOps.mirror(crop)
    return Mammogram(_square(crop), inverted, bool(flipped), box)


def breast_mask(grey: np.ndarray) -> np.ndarray:
    """Boolean mask of the breast in a dark-background grey image (uint8): see the module's step 2."""
    low, high = THRESHOLD_RANGE
    threshold = min(max(_otsu(grey), low), high)
    mask = ndimage.binary_opening(grey > threshold, structure=np.ones((5, 5), bool))
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    return ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))


def view_from_name(name: str) -> str | None:
    """The screening view (CC or MLO) a file name carries as a word (``R_CC_123.png``, ``left-mlo.dcm``), or None.

    Args:
        name: a file name or path; only its last part is read.

    Returns:
        "CC", "MLO" or None where the name says neither (or both).
    """
    words = set(re.split(r"[^A-Z0-9]+", re.split(r"[\\/]", name)[-1].upper()))
    found = [view for view in VIEWS if view in words]
    return found[0] if len(found) == 1 else None


def _bright_background(grey: np.ndarray) -> bool:
    """True when the border frame is more often near-white than near-black: an inverted image."""
    width = max(1, round(min(grey.shape) * FRAME))
    frame = np.concatenate(
        [grey[:width].ravel(), grey[-width:].ravel(), grey[:, :width].ravel(), grey[:, -width:].ravel()]
    )
    return bool((frame > 225).mean() > (frame < 30).mean())


def _otsu(grey: np.ndarray) -> int:
    histogram = np.bincount(grey.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256)
    weight, mean = np.cumsum(histogram), np.cumsum(histogram * levels)
    total, total_mean = weight[-1], mean[-1]
    between = (total_mean * weight - mean * total) ** 2 / np.maximum(weight * (total - weight), 1e-12)
    return int(np.argmax(between[:-1]))


def _square(image: Image.Image) -> Image.Image:
    """``image`` padded with black to a square: on the right (the nipple side), and evenly above and below."""
    w, h = image.size
    side = max(w, h)
    out = Image.new("RGB", (side, side), "black")
    out.paste(image, (0, (side - h) // 2))
    return out
