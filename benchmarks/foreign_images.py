"""A development set of images no shipped model may accept, built only from images that ship inside packages.

    from foreign_images import foreign_sets
    sets = foreign_sets()            # {name: [PIL images]}

- ``CT, MR, nuclear medicine (pydicom)``: every pydicom test file with a CT, MR, NM or other grey image,
  read as a viewer shows it (``cancer_models.load_image``), every frame of multi-frame files.
- ``ultrasound of other organs (pydicom)``: its cardiac, abdominal and Doppler ultrasound files (not shown to
  the breast ultrasound model, for which it is its own modality).
- ``photographs (scikit-image, matplotlib)``: people, animals, objects, textures, astronomy; square crops too.
- ``fundus and microscopy (scikit-image)``: a retina photograph, an angiogram, an immunohistochemistry
  (DAB) slide, a fluorescence cell image; square crops too.
- ``grey / inverted / recoloured <modality>``: the other tasks' test images (``../shared/data``, where present)
  made grey, inverted or hue-rotated; and screening mammograms (no shipped model is for them) as stored and
  inverted.

None of these is used to fit any limit: the rejection thresholds come from each model's own images and its
other modalities' validation splits (``calibrate --refuse``). Used by ``benchmarks/rejection.py`` and tests.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from cancer_models import ImageError, load_image

# The shipped models' tasks, and other modalities in ../shared/data that none of them is for.
TASKS = ("histopathology", "dermoscopy", "ultrasound")
OTHER_MODALITIES = ("mammography",)
PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "color.png", "grass.png",
    "gravel.png", "horse.png", "hubble_deep_field.jpg", "logo.png", "moon.png", "motorcycle_left.png", "page.png",
    "rocket.jpg", "text.png", "clock_motion.png", "chessboard_RGB.png", "phantom.png",
)  # fmt: skip
FUNDUS_AND_MICROSCOPY = ("retina.jpg", "microaneurysms.png", "ihc.png", "cell.png")
MATPLOTLIB_PHOTOS = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png")


def _crops(image: Image.Image, n: int, rng: np.random.Generator) -> list[Image.Image]:
    """``image`` itself and ``n`` square crops of a quarter to all of its shorter side."""
    w, h = image.size
    out = [image]
    for _ in range(n):
        side = int(rng.integers(max(min(w, h) // 4, 16), min(w, h) + 1))
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        out.append(image.crop((x, y, x + side, y + side)))
    return out


def dicom_images() -> tuple[list[Image.Image], list[Image.Image]]:
    """(non-ultrasound, ultrasound) images of pydicom's test files, every frame, at least 32 px a side."""
    import pydicom

    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    other, ultrasound = [], []
    for path in sorted(folder.glob("*.dcm")):
        try:
            first = load_image(path)
        except ImageError:
            continue
        frames = [first] + [load_image(path, frame=k) for k in range(1, min(first.info.get("frames", 1), 8))]
        for image in frames:
            if min(image.size) < 32:
                continue
            (ultrasound if first.info.get("dicom_modality") == "US" else other).append(image)
    return other, ultrasound


def package_images(names: tuple[str, ...], crops: int, rng: np.random.Generator) -> list[Image.Image]:
    import matplotlib
    import skimage

    folders = [Path(skimage.__file__).parent / "data", Path(matplotlib.get_data_path()) / "sample_data"]
    images = []
    for name in names:
        path = next((f / name for f in folders if (f / name).is_file()), None)
        if path is not None:
            images += _crops(load_image(path), crops, rng)
    return images


def transformed(data: Path, task: str, n: int, rng: np.random.Generator) -> dict[str, list[Image.Image]]:
    """``n`` of ``task``'s test images made grey, inverted and hue-rotated (empty without the data)."""
    files = sorted((data / task / "test").glob("*/*.jpg"))
    if not files:
        return {}
    chosen = [load_image(files[i]) for i in sorted(rng.choice(len(files), min(n, len(files)), replace=False))]

    def hue_rotated(image: Image.Image) -> Image.Image:
        h, s, v = image.convert("HSV").split()
        shift = int(rng.integers(64, 192))
        return Image.merge("HSV", (h.point(lambda x: (x + shift) % 256), s, v)).convert("RGB")

    return {
        f"grey {task}": [ImageOps.grayscale(im).convert("RGB") for im in chosen],
        f"inverted {task}": [ImageOps.invert(im) for im in chosen],
        f"recoloured {task}": [hue_rotated(im) for im in chosen],
    }


def foreign_sets(data: Path | None = None, n: int = 60, seed: int = 0) -> dict[str, list[Image.Image]]:
    """Every foreign set by name; the transformed ones only where ``data`` (the data folder) holds the tasks."""
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other, ultrasound = dicom_images()
        sets = {
            "CT, MR, nuclear medicine (pydicom)": other,
            "ultrasound of other organs (pydicom)": ultrasound,
            "photographs (scikit-image, matplotlib)": package_images(PHOTOS + MATPLOTLIB_PHOTOS, 3, rng),
            "fundus and microscopy (scikit-image)": package_images(FUNDUS_AND_MICROSCOPY, 12, rng),
        }
        if data is not None:
            for task in TASKS:
                sets |= transformed(data, task, n, rng)
            for modality in OTHER_MODALITIES:  # as they are, and inverted: no model of theirs is shipped
                sets |= {name: images for name, images in transformed(data, modality, n, rng).items()
                         if not name.startswith("recoloured")}  # fmt: skip
    return sets


def sets_for(task: str, sets: dict[str, list[Image.Image]]) -> dict[str, list[Image.Image]]:
    """The foreign sets for the model of ``task``: not its own modality's ultrasound or transformed images."""
    own = ("ultrasound of other organs",) if task == "ultrasound" else ()
    return {name: images for name, images in sets.items() if not name.startswith(own) and not name.endswith(task)}
