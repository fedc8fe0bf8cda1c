"""DICOM files as images: pixels as a viewer shows them, and nothing about the patient.

``pydicom`` decodes the pixel data (JPEG, JPEG-LS, JPEG 2000 and RLE through the ``pylibjpeg`` plugins); then,
as a viewer does, the Modality LUT (rescale slope and intercept), the VOI LUT or window centre/width, inversion
of MONOCHROME1, palette colour and YBR-to-RGB conversion. Only pixel-describing attributes are read; names, IDs
and dates never reach a message, a log or an output. ``Modality`` is kept as a hint for the rejection check.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ImageError

DICOM_MAGIC_OFFSET = 128  # "DICM" follows a 128-byte preamble in a DICOM Part 10 file

# DICOM Modality codes with their names, for messages.
MODALITY_NAMES = {
    "US": "ultrasound",
    "CT": "CT",
    "MR": "MR",
    "CR": "radiograph",
    "DX": "radiograph",
    "MG": "mammogram",
    "NM": "nuclear medicine",
    "PT": "PET",
    "XA": "angiogram",
    "OP": "ophthalmic photograph",
    "SM": "slide microscopy",
    "XC": "external camera photograph",
    "ES": "endoscopy",
    "OT": "other",
    "SC": "secondary capture",
}


# The DICOM Modality codes a task's images can carry; any other code is a different kind of image. Generic
# codes (other, secondary capture) say nothing and are accepted.
TASK_MODALITIES = {
    "ultrasound": {"US"},
    "dermoscopy": {"XC", "DMS"},
    "histopathology": {"SM"},
    "mammography": {"MG"},
}
GENERIC_MODALITIES = {"OT", "SC"}


def modality_conflict(modality: str | None, task: str) -> str | None:
    """Why a file of DICOM ``modality`` cannot be an image for a model of ``task`` (None when it can be, or
    when either says nothing)."""
    expected = next((codes for name, codes in TASK_MODALITIES.items() if name in task.lower()), None)
    if not modality or expected is None or modality in expected or modality in GENERIC_MODALITIES:
        return None
    kind = MODALITY_NAMES.get(modality, modality)
    holds = f"{_article(kind)} {kind} image (modality {modality})"
    return f"the DICOM file says it holds {holds}; this model is for {task} images"


def _article(word: str) -> str:
    """'a' or 'an' as the word is spoken: an ultrasound, an MR, a CT, a mammogram."""
    spoken_vowel = word[:1].lower() in "aeiou" or word in ("MR", "SM", "OT", "XA", "XC", "ES", "NM")
    return "an" if spoken_vowel else "a"


@dataclass(frozen=True)
class DicomImage:
    image: Image.Image  # 8-bit RGB, as a viewer shows the chosen frame (cropped to its ultrasound region)
    modality: str | None  # the Modality attribute (e.g. "US", "CT"), a hint only
    frames: int  # frames in the file
    # (left, top, right, bottom) of the ultrasound region the image was cropped to, where the file states one
    region: tuple[int, int, int, int] | None = None
    # What a reader of a mammogram is told, where the file says: the breast (L or R), the view (CC, MLO, ...),
    # the side of the image the chest wall is on (from the patient orientation), and how grey levels were set.
    laterality: str | None = None
    view: str | None = None
    chest_wall: str | None = None
    note: str | None = None


def is_dicom(source: str | os.PathLike | bytes) -> bool:
    """True for a DICOM Part 10 file (the "DICM" marker after the preamble) or a path ending in .dcm."""
    if isinstance(source, (bytes, bytearray)):
        return source[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == b"DICM"
    path = Path(source)
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with open(path, "rb") as fh:
            fh.seek(DICOM_MAGIC_OFFSET)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def read_dicom(source: str | os.PathLike | bytes, frame: int = 0, name: str = "the file") -> DicomImage:
    """One frame of a DICOM file as a viewer shows it, with what a reader is told and nothing about the patient.

    Args:
        source: a path or the file's bytes.
        frame: the frame to read (0 for a single-frame file).
        name: how messages name the file.

    Returns:
        The ``DicomImage``: 8-bit RGB pixels, Modality, frame count, the ultrasound region cropped to, and for a
        mammogram its laterality, view, chest-wall side and how its grey levels were set.

    Raises:
        ImageError: not DICOM, no pixel data, a missing frame, a tomosynthesis stack, or undecodable pixels.
    """
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
    except ImportError as e:  # pragma: no cover - pydicom is a dependency
        raise ImageError("reading DICOM needs pydicom: pip install pydicom pylibjpeg pylibjpeg-libjpeg") from e
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(fp)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as e:
        raise ImageError(f"{name} is not a readable DICOM file ({type(e).__name__})") from None
    modality = ds.get("Modality") or None
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        kind = f" (modality {modality})" if modality else ""
        raise ImageError(f"{name} is a DICOM file without an image{kind}: nothing to analyse")
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        raise ImageError(f"{name}: its DICOM frame count is malformed") from None
    if not 0 <= frame < frames:
        raise ImageError(f"{name} has {frames} frame(s); frame {frame} does not exist")
    if modality == "MG" and frames > 1:
        raise ImageError(
            f"{name} is a mammography stack of {frames} frames (tomosynthesis): only 2-D mammograms (one frame) "
            "can be analysed"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = ds.pixel_array
    except Exception as e:  # noqa: BLE001 - pydicom raises many kinds for truncated or undecodable pixel data
        # The message of a decoder can quote attributes; say only what went wrong with the pixels.
        raise ImageError(
            f"{name}: its DICOM pixel data cannot be decoded ({type(e).__name__}; truncated, or a compression "
            "without an installed decoder)"
        ) from None
    if frames > 1:
        pixels = pixels[frame]
    rgb, for_processing = _displayed(pixels, ds, name)
    region = ultrasound_region(ds, rgb.shape[1], rgb.shape[0])
    if region is not None:  # a scanner's screen: the image without its text, scales and colour bars
        left, top, right, bottom = region
        rgb = rgb[top:bottom, left:right]
    note = FOR_PROCESSING_NOTE if for_processing else None
    return DicomImage(
        Image.fromarray(np.ascontiguousarray(rgb)),
        modality,
        frames,
        region,
        laterality=_code(ds.get("ImageLaterality") or ds.get("Laterality")),
        view=_code(ds.get("ViewPosition")),
        chest_wall=_chest_wall(ds),
        note=note,
    )


FOR_PROCESSING_NOTE = (
    "a FOR PROCESSING image (raw detector values, no display window): grey levels set from its own 0.5-99.5% range"
)


def _displayed(pixels: np.ndarray, ds, name: str) -> tuple[np.ndarray, bool]:
    """A frame's pixels as a viewer shows them (uint8 RGB), and whether it was a FOR PROCESSING grey image, whose
    grey levels were set from its own range."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    # Raw detector values, meant for a workstation's processing and never for display: no window to apply.
    for_processing = str(ds.get("PresentationIntentType", "")).upper() == "FOR PROCESSING"
    try:
        if photometric == "PALETTE COLOR":
            return _to_uint8(apply_color_lut(pixels, ds), 16 if pixels.dtype != np.uint8 else 8), False
        if int(ds.get("SamplesPerPixel", 1)) == 3:  # pydicom returns YBR data converted to RGB
            return _to_uint8(pixels, int(ds.get("BitsStored", 8))), False
        values = apply_modality_lut(pixels, ds)
        grey = _own_window(values, photometric) if for_processing else _grey(values, ds, photometric)
        return np.repeat(grey[..., None], 3, axis=2), for_processing
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        raise ImageError(f"{name}: its DICOM pixel attributes are inconsistent ({type(e).__name__})") from None


def _code(value) -> str | None:
    """A short coded attribute (laterality, view) as text, or None when absent or empty."""
    text = str(value or "").strip().upper()
    return text or None


def _chest_wall(ds) -> str | None:
    """The side of the image the chest wall is on, from PatientOrientation's first value (where the rows point):
    towards anterior (A: the nipple is to the right) puts the chest wall on the left; posterior (P) on the right."""
    orientation = ds.get("PatientOrientation")
    if not orientation or len(orientation) < 1:
        return None
    row = str(orientation[0]).upper()
    return "left" if row.startswith("A") else "right" if row.startswith("P") else None


def _own_window(values: np.ndarray, photometric: str) -> np.ndarray:
    """Raw values to 0-255 over their own 0.5-99.5% range (a FOR PROCESSING image has no display window)."""
    values = np.asarray(values, dtype=np.float64)
    lo, hi = np.percentile(values, [0.5, 99.5])
    grey = np.zeros(values.shape) if hi <= lo else np.clip((values - lo) / (hi - lo), 0, 1) * 255
    grey = np.round(grey).astype(np.uint8)
    return 255 - grey if photometric == "MONOCHROME1" else grey


MIN_REGION_SIDE = 32  # a stated region smaller than this is no image to classify: the whole frame is kept


def ultrasound_region(ds, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The (left, top, right, bottom) box of the largest 2-D tissue region of a Sequence of Ultrasound Regions,
    in pixels and clipped to the frame; None when the file states none (or none that is usable)."""
    boxes = []
    for item in ds.get("SequenceOfUltrasoundRegions") or []:
        try:
            box = (
                int(item.RegionLocationMinX0),
                int(item.RegionLocationMinY0),
                int(item.RegionLocationMaxX1) + 1,  # the Max attributes are inclusive
                int(item.RegionLocationMaxY1) + 1,
            )
            # 1 = a 2-D image (B-mode and the like); 1 = tissue: not a Doppler trace, M-mode strip or colour bar
            tissue = int(item.get("RegionSpatialFormat", 1)) == 1 and int(item.get("RegionDataType", 1)) == 1
        except (AttributeError, TypeError, ValueError):
            continue
        left, top = max(box[0], 0), max(box[1], 0)
        right, bottom = min(box[2], width), min(box[3], height)
        if tissue and right - left >= MIN_REGION_SIDE and bottom - top >= MIN_REGION_SIDE:
            boxes.append((left, top, right, bottom))
    return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), default=None)


def _grey(values: np.ndarray, ds, photometric: str) -> np.ndarray:
    """Modality values to 0-255 as a viewer shows them: through the VOI LUT, or the first window centre and
    width (the DICOM linear function), or else the whole stored range (0 to 2^BitsStored - 1 through the
    Modality LUT), never the image's own minimum and maximum: the same pixels then look the same whatever
    else the image holds; MONOCHROME1 inverted."""
    from pydicom.pixels import apply_voi_lut

    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ImageError("the DICOM image contains NaN or infinite values")
    if "VOILUTSequence" in ds:
        values = np.asarray(apply_voi_lut(values, ds), dtype=np.float64)
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        scaled = values * (255.0 / (2**bits - 1))
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        centre, width = _first(ds.WindowCenter), max(_first(ds.WindowWidth), 2.0)
        scaled = ((values - (centre - 0.5)) / (width - 1) + 0.5) * 255
    else:
        lo, hi = _stored_range(ds)
        scaled = (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros(values.shape)
    grey = np.round(np.clip(scaled, 0, 255)).astype(np.uint8)
    return 255 - grey if photometric == "MONOCHROME1" else grey


def _stored_range(ds) -> tuple[float, float]:
    """The values a pixel can hold (BitsStored, signed or not), through the Modality LUT's slope and intercept."""
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8)
    signed = int(ds.get("PixelRepresentation") or 0) == 1
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    slope, intercept = float(ds.get("RescaleSlope") or 1), float(ds.get("RescaleIntercept") or 0)
    ends = sorted((lo * slope + intercept, hi * slope + intercept))
    return ends[0], ends[1]


def _first(value) -> float:
    """A window attribute may hold several windows; a viewer opens with the first."""
    from pydicom.multival import MultiValue

    return float(value[0] if isinstance(value, (MultiValue, list, tuple)) else value)


def _to_uint8(pixels: np.ndarray, bits: int) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    top = float(2 ** min(bits, 16) - 1) if bits else float(pixels.max() or 1)
    if pixels.max() > top:
        top = float(pixels.max())
    return np.round(pixels.astype(np.float64) * (255.0 / top)).clip(0, 255).astype(np.uint8)
