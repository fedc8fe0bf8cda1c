"""Estimate the microns per pixel of the LC25000 tiles (160 px here; the release does not say) from the size of
nuclei, against GlaS (20x objective, about 0.62 um/px): colon epithelium in both.

Nuclei: the haematoxylin channel (colour deconvolution, scikit-image's rgb2hed) above Otsu's threshold, opened
over 3 x 3, compact regions only (eccentricity under 0.95, solidity over 0.85); an image's figure is the median
equivalent diameter of its nuclei, a set's the median over 80 images. The LC25000 tiles are upsampled 4x first
(a nucleus there is 3-4 pixels across). The same measurement on GlaS shrunk to that scale reads its nuclei
about 6% small, and the estimate is corrected by that ratio.

    python scripts/lc25000_scale.py [--data ../shared/data]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.color import rgb2hed
from skimage.filters import threshold_otsu
from skimage.measure import label, regionprops

GLAS_MPP = 0.62
UPSAMPLE = 4


def nucleus_diameters(image: Image.Image, upsample: int = 1) -> list[float]:
    """Equivalent diameters (in the image's own pixels) of the compact haematoxylin-dark regions."""
    rgb = image.convert("RGB")
    if upsample != 1:
        rgb = rgb.resize((rgb.width * upsample, rgb.height * upsample), Image.BICUBIC)
    haematoxylin = rgb2hed(np.asarray(rgb))[..., 0]
    mask = ndimage.binary_opening(haematoxylin > threshold_otsu(haematoxylin), np.ones((3, 3)))
    regions = regionprops(label(mask))
    return [r.equivalent_diameter_area / upsample for r in regions if r.area >= 20 and r.eccentricity < 0.95
            and r.solidity > 0.85]  # fmt: skip


def median_diameter(images: list[Image.Image], upsample: int = 1) -> float:
    per_image = [np.median(d) for d in (nucleus_diameters(im, upsample) for im in images) if len(d) >= 5]
    return float(np.median(per_image))


def sample(files: list[Path], n: int = 80) -> list[Image.Image]:
    chosen = np.random.default_rng(0).choice(len(files), min(n, len(files)), replace=False)
    return [Image.open(files[i]) for i in sorted(chosen)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    lc25000 = sample(sorted((args.data / "histopathology" / "train").glob("*/colon*.jpg")))
    glas = sample(sorted((args.data / "histopathology_glas" / "train").glob("*/*.jpg")))
    lc_px, glas_px = median_diameter(lc25000, UPSAMPLE), median_diameter(glas)
    raw = GLAS_MPP * glas_px / lc_px
    # The method's bias at the LC25000 tiles' scale: GlaS shrunk to it and measured the same way.
    factor = raw / GLAS_MPP
    shrunk = [im.resize((round(im.width / factor), round(im.height / factor)), Image.BILINEAR) for im in glas[:40]]
    bias = median_diameter(shrunk, UPSAMPLE) * factor / glas_px
    print(json.dumps({
        "lc25000_nucleus_px": round(lc_px, 2), "glas_nucleus_px": round(glas_px, 2), "glas_mpp": GLAS_MPP,
        "uncorrected_mpp": round(raw, 3), "small_scale_bias": round(bias, 3), "lc25000_mpp": round(raw * bias, 2),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
