"""Decode and validate input images and resize them; the one reading path for training and inference (what a
model then does to the pixels, its colour constancy and normalisation, is ``models.preprocessing``).

Anything a user can hand us (a path, bytes, a PIL image, a numpy array; any PIL mode) becomes an
upright 8-bit RGB PIL image here, or an ``ImageError`` that says what is wrong with it.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError
from .dicom import is_dicom, read_dicom
from .mammography import canonical_mammogram

# Refuse anything larger before decoding it: 8000 x 8000 is far beyond any tile or photo we classify,
# and a small file that claims more is a decompression bomb.
MAX_PIXELS = 64_000_000
MAX_FILE_BYTES = 64 * 1024 * 1024

ImageInput = str | os.PathLike | bytes | Image.Image | np.ndarray


def load_image(source: ImageInput, frame: int = 0) -> Image.Image:
    """Return ``source`` as an upright RGB image (EXIF orientation applied, alpha composited on white).

    A DICOM file (a path or its bytes) gives its ``frame``-th frame as a viewer shows it (``dicom.py``), with
    its Modality attribute in ``image.info["dicom_modality"]``; where the file states an ultrasound region and
    the image was cropped to it, that box in ``image.info["dicom_region"]``; a mammogram's laterality, view and
    chest-wall side in ``dicom_laterality``, ``dicom_view`` and ``dicom_chest_wall``; and how grey levels were set,
    where that needs saying, in ``dicom_note`` (None where the file says nothing).

    Args:
        source: a path, bytes, a numpy array (H, W[, C]) or a PIL image.
        frame: the frame of a multi-frame DICOM file.

    Returns:
        An RGB PIL image.

    Raises:
        ImageError: an empty, corrupt, non-image, too large or unreadable file, or an array of another shape.
    """
    readable = isinstance(source, (bytes, bytearray)) or (
        isinstance(source, (str, os.PathLike)) and Path(source).is_file()
    )
    if readable and is_dicom(source):
        return _load_dicom(source, frame)
    if isinstance(source, np.ndarray):
        image = _from_array(source)
    elif isinstance(source, Image.Image):
        image = source
    elif isinstance(source, (bytes, bytearray)):
        image = _open(io.BytesIO(source), "the uploaded data", len(source))
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{path}: no such file")
        size = path.stat().st_size
        image = _open(path, str(path), size)
    else:
        raise ImageError(f"cannot read an image from a {type(source).__name__}")
    _check_size(image)
    try:
        image = ImageOps.exif_transpose(image)
    except (OSError, ValueError, KeyError, TypeError, SyntaxError):
        pass  # a malformed EXIF block should not stop classification of valid pixels
    return _to_rgb(image)


def _load_dicom(source: str | os.PathLike | bytes, frame: int) -> Image.Image:
    in_memory = isinstance(source, (bytes, bytearray))
    name = "the uploaded data" if in_memory else Path(source).name
    if (len(source) if in_memory else Path(source).stat().st_size) > MAX_FILE_BYTES:
        raise ImageError(f"{name} is larger than the {MAX_FILE_BYTES / 1e6:.0f} MB limit")
    dicom = read_dicom(source, frame, name)
    _check_size(dicom.image)
    dicom.image.info.update(
        dicom_modality=dicom.modality,
        frames=dicom.frames,
        dicom_region=dicom.region,
        dicom_laterality=dicom.laterality,
        dicom_view=dicom.view,
        dicom_chest_wall=dicom.chest_wall,
        dicom_note=dicom.note,
    )
    return dicom.image


def _open(fp, name: str, size: int) -> Image.Image:
    if size == 0:
        raise ImageError(f"{name} is empty (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise ImageError(f"{name} is {size / 1e6:.0f} MB; the limit is {MAX_FILE_BYTES / 1e6:.0f} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(fp)
            _check_size(image)  # from the header, before any pixel is decoded
            image.load()
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        if isinstance(e, UnidentifiedImageError):
            raise ImageError(f"{name} is not an image file we can read (JPEG, PNG, TIFF, BMP, WebP, ...)") from e
        raise ImageError(f"{name} is too large to decode safely: {e}") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{name} is corrupt or truncated: {e}") from e
    return image


def _check_size(image: Image.Image) -> None:
    w, h = image.size
    if w * h > MAX_PIXELS:
        raise ImageError(f"image is {w}x{h} pixels; the limit is {MAX_PIXELS / 1e6:.0f} megapixels")
    if w < 1 or h < 1:
        raise ImageError(f"image has no pixels ({w}x{h})")


def _from_array(array: np.ndarray) -> Image.Image:
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ImageError(f"an image array must be HxW, HxWx1, HxWx3 or HxWx4; got shape {a.shape}")
    if a.size == 0:
        raise ImageError(f"image array is empty (shape {a.shape})")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint8:
        pass
    elif np.issubdtype(a.dtype, np.floating) and np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1:
        a = np.round(a * 255).astype(np.uint8)  # the usual float convention: [0, 1]
    elif np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating):
        a = _stretch_to_uint8(a)
    else:
        raise ImageError(f"unsupported image array dtype {a.dtype}")
    return Image.fromarray(a)  # uint8: L, RGB or RGBA by shape


def _stretch_to_uint8(a: np.ndarray) -> np.ndarray:
    """Map high-bit-depth data onto 0-255 by its own range.

    16-bit and float images rarely use their full range (12-bit scanners, arbitrary float scales), so
    a fixed divisor would give a black image; the per-image range is what a viewer shows.
    """
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ImageError("image contains NaN or infinite values")
    lo, hi = a.min(), a.max()
    if hi == lo:
        return np.zeros(a.shape, np.uint8)
    return np.round((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I", "F") or mode.startswith("I;16"):
        return Image.fromarray(_stretch_to_uint8(np.asarray(image))).convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as e:
        raise ImageError(f"unsupported image mode {mode!r}: {e}") from e


def prepare_image(image: Image.Image, preprocessing: str) -> Image.Image:
    """``image`` (from ``load_image``) after a model's preprocessing (``ModelConfig.preprocessing``): as it is
    for "none"; for "mammogram" in canonical form (``mammography.canonical_mammogram``, with the side of the chest
    wall from a DICOM file's patient orientation where it says)."""
    if preprocessing == "none":
        return image
    if preprocessing == "mammogram":
        return canonical_mammogram(image, image.info.get("dicom_chest_wall")).image
    raise ValueError(f"unknown preprocessing {preprocessing!r}")


def to_uint8_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """RGB image -> uint8 tensor (3, size, size); the resize every model input goes through.

    Antialiased bilinear on the uint8 data, exactly what torchvision's ``resize`` computes (without importing
    torchvision, which costs seconds at start-up).
    """
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()
    return F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
