"""Reading large images and whole slides: level-0 regions, a thumbnail and where the tissue is.

A slide is read through OpenSlide (``openslide-python`` with the ``openslide-bin`` wheel: .svs, .ndpi, .mrxs,
generic pyramidal TIFF and the other formats it knows); any other image file (PNG, JPEG, plain TIFF, DICOM)
through PIL, decoded once. Tissue is found on a low-resolution thumbnail: stained pixels (saturation above a fixed
floor, or dark stain), with Otsu's threshold lowering the floor only where glass and tissue separate cleanly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from ..errors import ImageError
from .dicom import is_dicom
from .images import load_image

MAX_PLAIN_PIXELS = 1_000_000_000  # a non-pyramidal file is decoded whole: at most a gigapixel
MIN_TISSUE = 0.25  # a tile needs this share of tissue to be classified (cancer-models slides --min-tissue)

# Tissue detection. Glass, and white or grey margins, have almost no colour (saturation under about 0.05);
# stained tissue has some: pale eosin and lung alveoli 0.06-0.2, dense tumour 0.3-0.6. A fixed floor keeps
# pale tissue whether or not the field also has glass; Otsu's threshold on saturation alone would split a
# field without glass between its pale and its dense tissue and call the pale half background.
SATURATION_FLOOR = 0.08
MIN_SATURATION = 0.04  # Otsu may lower the floor to here when the field's glass and tissue separate cleanly
BIMODAL = 0.8  # Otsu's effectiveness (between-class over total variance) above which glass is clearly there
GLASS_SATURATION = 0.05  # the darker-than-threshold class of a bimodal field must look like glass
OPTICAL_DENSITY_FLOOR = 0.3  # stain dark enough to be tissue even with little colour (mean optical density)
DARK = 0.1  # brightness under this is a black margin or label, never tissue


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
        tile = Image.new("RGB", (size, size), "white")  # beyond the edge: white, as glass
        tile.paste(self.image.crop((x, y, min(x + size, self.image.width), min(y + size, self.image.height))))
        return tile if size == out else tile.resize((out, out), Image.BILINEAR, reducing_gap=2.0)

    def thumbnail(self, side: int) -> Image.Image:
        thumb = self.image.copy()
        thumb.thumbnail((side, side), Image.BILINEAR)
        return thumb


def open_slide(path: str | Path) -> SlideReader:
    """A reader for a slide or a large image.

    Args:
        path: a slide (OpenSlide's formats, generic pyramidal TIFF) or any other image file.

    Returns:
        An OpenSlide reader for the formats it knows, a PIL one (decoded once) for any other image.

    Raises:
        ImageError: a missing, empty, unreadable or too large file.
    """
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
    """Boolean (H, W) mask of tissue: saturation above a fixed floor (lowered by Otsu's threshold where the
    field is clearly glass and tissue), or dark stain (optical density above its floor), and not black;
    then closed and opened over 3 x 3 pixels, which fills pinholes and drops specks of dust.

    Args:
        thumbnail: the slide or image at low resolution, RGB.

    Returns:
        Boolean (H, W): True where there is tissue.
    """
    rgb = np.asarray(thumbnail.convert("RGB"), dtype=np.float64)
    hsv = np.asarray(thumbnail.convert("HSV"), dtype=np.float64) / 255
    saturation, value = hsv[..., 1], hsv[..., 2]
    threshold = SATURATION_FLOOR
    otsu, effectiveness, below_mean = _otsu(saturation)
    if effectiveness > BIMODAL and below_mean < GLASS_SATURATION:
        threshold = min(threshold, max(otsu, MIN_SATURATION))
    density = -np.log10(np.clip(rgb, 1, 255) / 255).mean(axis=2)
    tissue = ((saturation > threshold) | (density > OPTICAL_DENSITY_FLOOR)) & (value > DARK)
    mask = Image.fromarray(tissue.astype(np.uint8) * 255)
    for size_filter in (ImageFilter.MaxFilter, ImageFilter.MinFilter, ImageFilter.MinFilter, ImageFilter.MaxFilter):
        mask = mask.filter(size_filter(3))  # closing, then opening
    return np.asarray(mask) > 127


def _otsu(values: np.ndarray) -> tuple[float, float, float]:
    """Otsu's threshold of values in [0, 1], its effectiveness (between-class over total variance, 0 to 1) and
    the mean of the values below it."""
    histogram, edges = np.histogram(values, bins=256, range=(0, 1))
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(histogram)
    mean = np.cumsum(histogram * centres)
    total, total_mean = weight[-1], mean[-1]
    between = (total_mean * weight - mean * total) ** 2 / np.maximum(weight * (total - weight), 1e-12)
    best = int(np.argmax(between[:-1]))
    variance = float(values.var()) * total**2
    effectiveness = float(between[best] / variance) if variance > 0 else 0.0
    below_mean = float(mean[best] / weight[best]) if weight[best] else 0.0
    return float(centres[best]), effectiveness, below_mean


def tile_starts(length: int, size: int, stride: int) -> list[int]:
    """Where tiles of ``size`` start along a side of ``length`` pixels, every ``stride``: the last one is shifted
    back to end at the edge, so the margin is classified too (a side shorter than a tile gets one tile, padded
    with white as glass)."""
    starts = list(range(0, max(length - size, 0) + 1, stride))
    if length > size and starts[-1] + size < length:
        starts.append(length - size)
    return starts
