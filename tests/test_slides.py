"""Large images and slides: a mosaic of real tiles in a known pattern, as a PNG and as a pyramidal TIFF."""

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import fixture_images
from PIL import Image

from cancer_models import ImageError, Predictor, load_pretrained
from cancer_models.cli import main as cli_main
from cancer_models.data.slides import tissue_mask
from cancer_models.evaluation.metrics import binary_metrics
from cancer_models.inference.slide_outputs import heatmap_image, probability_colours, write_outputs
from cancer_models.inference.slides import BACKGROUND, COLOURS, MIN_TISSUE, REFUSED, SlidePredictor
from cancer_models.settings import TileSpec

ROOT = Path(__file__).resolve().parents[1]
CELL = 160
# The pattern, row by row: B benign tile, M malignant tile, . blank glass, U a dermoscopy photo (refused).
PATTERN = ["BMB.M", "M.BMU", "BBM.M", ".MBMB"]


def mosaic() -> tuple[Image.Image, dict[tuple[int, int], str]]:
    tiles = {"B": [], "M": []}
    for split in ("train", "validation", "test"):
        for path in fixture_images("histopathology", split):
            tiles["B" if path.parent.name == "benign" else "M"].append(Image.open(path).convert("RGB"))
    scan = Image.open(fixture_images("dermoscopy", "test")[0]).convert("RGB").resize((CELL, CELL))
    image = Image.new("RGB", (CELL * len(PATTERN[0]), CELL * len(PATTERN)), (245, 245, 243))
    truth = {}
    for r, row in enumerate(PATTERN):
        for c, kind in enumerate(row):
            if kind in "BM":
                image.paste(tiles[kind].pop(), (c * CELL, r * CELL))
            elif kind == "U":
                image.paste(scan, (c * CELL, r * CELL))
            truth[(c * CELL, r * CELL)] = kind
    return image, truth


def as_pyramidal_tiff(image: Image.Image, path: Path, mpp: float | None = None) -> Path:
    """``image`` as a three-level tiled TIFF that OpenSlide reads, with its microns per pixel where given."""
    level = np.asarray(image)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for i in range(3):
            scale = {}
            if mpp:  # pixels per centimetre, as the TIFF resolution tags hold it
                scale = {"resolution": (1e4 / (mpp * 2**i),) * 2, "resolutionunit": "CENTIMETER"}
            tif.write(level, tile=(128, 128), compression="zlib", photometric="rgb", subfiletype=int(i > 0), **scale)
            level = level[::2, ::2]
    return path


@pytest.fixture(scope="module")
def slides() -> SlidePredictor:
    return SlidePredictor(Predictor(load_pretrained(ROOT / "models" / "histopathology-cancer-cnn")), tile_size=CELL)


@pytest.fixture(scope="module")
def field(tmp_path_factory) -> tuple[Path, Path, dict]:
    folder = tmp_path_factory.mktemp("slides")
    image, truth = mosaic()
    png = folder / "field.png"
    image.save(png)
    return png, as_pyramidal_tiff(image, folder / "field.tif"), truth


def test_the_map_follows_the_known_pattern(slides, field):
    png, _, truth = field
    result = slides.predict(png)
    by_cell = {(t.x, t.y): t for t in result.tiles}
    assert set(by_cell) == set(truth)
    assert all(by_cell[c].status == BACKGROUND for c, kind in truth.items() if kind == ".")
    assert all(by_cell[c].status == REFUSED and by_cell[c].p_malignant is None for c, k in truth.items() if k == "U")
    scored = [(kind == "M", by_cell[c].p_malignant) for c, kind in truth.items() if kind in "BM"]
    assert all(p is not None for _, p in scored)
    targets, probs = np.array([t for t, _ in scored], int), np.array([p for _, p in scored])
    assert binary_metrics(targets, probs, 0.5, n_bootstrap=0)["auc"] >= 0.95
    summary = result.summary()
    assert summary["background_tiles"] == sum(k == "." for k in truth.values())
    assert summary["refused_tiles"] == 1 and summary["tissue_tiles"] == len(scored) + 1
    assert summary["top_regions"][0]["decision"] in ("malignant", "uncertain")


def test_a_pyramidal_tiff_gives_the_same_map(slides, field):
    png, tif, _ = field
    a, b = slides.predict(png), slides.predict(tif)
    assert [(t.x, t.y, t.status) for t in a.tiles] == [(t.x, t.y, t.status) for t in b.tiles]
    pa = np.array([t.p_malignant or 0 for t in a.tiles])
    pb = np.array([t.p_malignant or 0 for t in b.tiles])
    assert np.abs(pa - pb).max() < 1e-3  # zlib is lossless: the same pixels


def test_a_slide_that_gives_its_scale_is_tiled_at_the_models(field, tmp_path):
    """The same field scanned at twice the magnification: its stated microns per pixel make the model's tiles
    (160 px at 1.25 um) 320 of its pixels, and the map is the one at the training scale."""
    png, _, truth = field
    model = load_pretrained(ROOT / "models" / "histopathology-cancer-cnn")
    assert model.config.tile == TileSpec(160, 1.25)
    image = Image.open(png)
    finer = as_pyramidal_tiff(
        image.resize((image.width * 2, image.height * 2), Image.BICUBIC), tmp_path / "x2.tif", 0.625
    )
    slides = SlidePredictor(Predictor(model))
    result, at_scale = slides.predict(finer), slides.predict(png)
    assert result.mpp == pytest.approx(0.625) and result.tile_size == 2 * CELL
    assert [(t.x // 2, t.y // 2, t.status) for t in result.tiles] == [(t.x, t.y, t.status) for t in at_scale.tiles]
    assert {(t.x // 2, t.y // 2) for t in result.tiles} == set(truth)


def test_overlapping_tiles_are_averaged_in_the_heatmap(slides, field):
    png, _, _ = field
    result = SlidePredictor(slides.predictor, tile_size=CELL, overlap=0.5).predict(png)
    assert result.stride == CELL // 2
    canvas = np.asarray(heatmap_image(result))
    scale = result.thumbnail.width / result.dimensions[0]
    answered = [t for t in result.tiles if t.status not in (BACKGROUND, REFUSED)]
    checked = 0
    for y in range(0, result.dimensions[1], CELL // 4):
        for x in range(0, result.dimensions[0], CELL // 4):
            px, py = int(x * scale), int(y * scale)
            covering = [
                t
                for t in answered
                if t.x * scale <= px < (t.x + t.size) * scale and t.y * scale <= py < (t.y + t.size) * scale
            ]
            if len(covering) < 2 or any(t.status == "uncertain" for t in covering):
                continue
            mean = np.mean([t.p_malignant for t in covering])
            assert np.abs(canvas[py, px, :3].astype(int) - probability_colours(mean)).max() <= 1, (x, y)
            checked += 1
    assert checked >= 10


def test_outputs_and_the_geojson_qupath_reads(slides, field, tmp_path):
    png, _, truth = field
    result = slides.predict(png)
    paths = write_outputs(result, tmp_path)
    collection = json.loads(paths["geojson"].read_text())
    assert collection["type"] == "FeatureCollection"
    assert len(collection["features"]) == sum(k != "." for k in truth.values())
    for feature in collection["features"]:
        ring = feature["geometry"]["coordinates"][0]
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Polygon"
        assert ring[0] == ring[-1] and len(ring) == 5
        props = feature["properties"]
        assert props["objectType"] == "tile" and props["classification"]["name"] in (
            "benign",
            "malignant",
            "uncertain",
            REFUSED,
        )
        assert len(props["classification"]["color"]) == 3 and "tissue" in props["measurements"]
    lines = paths["csv"].read_text().splitlines()
    assert lines[0] == "x,y,width,height,tissue,decision,p_malignant,in_distribution,unusualness"
    assert len(lines) == 1 + len(truth)
    refused = next(line for line in lines if ",refused," in line).split(",")
    assert refused[6] == "" and refused[7] == "False"  # no probability for a refused tile
    for name in ("heatmap", "overlay"):  # the thumbnail's size, and a legend strip below it
        image = Image.open(paths[name])
        assert image.width >= result.thumbnail.width and image.height == result.thumbnail.height + 44
        legend = np.asarray(image.convert("RGB"))[result.thumbnail.height :]
        assert (np.abs(legend - np.array(COLOURS[REFUSED])).sum(axis=2) == 0).any(), name
    # A refused tile stands out in the overlay: nearly solid, darker than any answered tile.
    overlay = np.asarray(Image.open(paths["overlay"]).convert("RGB"), dtype=int)
    scale = result.thumbnail.width / result.dimensions[0]
    refused_tile = next(t for t in result.tiles if t.status == REFUSED)
    cx, cy = int((refused_tile.x + CELL / 2) * scale), int((refused_tile.y + CELL / 2) * scale)
    assert overlay[cy, cx].max() < 60
    assert json.loads(paths["summary"].read_text())["tiles"] == len(truth)


def test_predict_warns_that_a_large_field_was_judged_as_one_shrunk_tile(tmp_path, capsys):
    paths = [p for split in ("train", "test") for p in fixture_images("histopathology", split)]
    tiles = [Image.open(p).convert("RGB") for p in paths if p.parent.name == "malignant"][:9]
    field = Image.new("RGB", (3 * CELL, 3 * CELL))
    for i, tile in enumerate(tiles):
        field.paste(tile.resize((CELL, CELL)), ((i % 3) * CELL, (i // 3) * CELL))
    field.save(tmp_path / "field.png")
    tiles[0].save(tmp_path / "tile.png")
    model = str(ROOT / "models" / "histopathology-cancer-cnn")
    assert cli_main(["predict", str(tmp_path / "field.png"), str(tmp_path / "tile.png"), "--model", model]) == 0
    out, err = capsys.readouterr()
    assert out.count("histopathology-cancer-cnn,") == 2  # both answered
    assert "field.png: This image is 480x480 pixels" in err and "tile by tile" in err and "tile.png" not in err


def test_the_command_and_a_corrupt_file(field, tmp_path, capsys):
    png, _, _ = field
    corrupt = tmp_path / "broken.svs"
    corrupt.write_bytes(b"II*\x00" + b"\x00" * 64)
    model = str(ROOT / "models" / "histopathology-cancer-cnn")
    assert (
        cli_main(
            [
                "slides",
                str(png),
                "--model",
                model,
                "--out",
                str(tmp_path / "out"),
                "--tile-size",
                str(CELL),
                "--explain",
                "2",
            ]
        )
        == 0
    )
    assert (tmp_path / "out" / "field.geojson").is_file() and len(
        list((tmp_path / "out").glob("field.gradcam_*.png"))
    ) == 2
    assert cli_main(["slides", str(corrupt), "--model", model, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "broken.svs" in err and "Traceback" not in err
    with pytest.raises(ImageError):
        SlidePredictor(Predictor(load_pretrained(model))).predict(tmp_path / "missing.tif")


def test_a_dicom_field_is_read_like_the_png(slides, field, tmp_path):
    from test_dicom import write_dicom

    png, _, _ = field
    dcm = write_dicom(tmp_path / "field.dcm", np.asarray(Image.open(png).convert("RGB")), "RGB", Modality="SM")
    a, b = slides.predict(png), slides.predict(dcm)
    assert [(t.status, t.p_malignant) for t in a.tiles] == [(t.status, t.p_malignant) for t in b.tiles]


def _tiles(kind: str) -> list[Image.Image]:
    paths = [p for split in ("train", "validation", "test") for p in fixture_images("histopathology", split)]
    return [Image.open(p).convert("RGB") for p in paths if p.parent.name == kind]


def _field(tiles: list[Image.Image], columns: int, glass: bool = False) -> Image.Image:
    """Tiles side by side, ``columns`` a row; with ``glass``, every other cell is left as blank glass."""
    cells = [t for tile in tiles for t in ((tile, None) if glass else (tile,))]
    rows = -(-len(cells) // columns)
    image = Image.new("RGB", (columns * CELL, rows * CELL), (245, 245, 243))
    for i, tile in enumerate(cells):
        if tile is not None:
            image.paste(tile, ((i % columns) * CELL, (i // columns) * CELL))
    return image


def _tissue_per_cell(image: Image.Image) -> np.ndarray:
    mask = tissue_mask(image)
    h, w = mask.shape
    return mask.reshape(h // CELL, CELL, w // CELL, CELL).mean(axis=(1, 3)).ravel()


@pytest.mark.parametrize("kinds", [("benign",), ("malignant",), ("benign", "malignant")])
def test_tissue_is_found_with_no_glass_in_the_field(kinds):
    """Without glass, Otsu alone split pale from dense tissue and called the pale half background."""
    tiles = [t for kind in kinds for t in _tiles(kind)]
    assert (_tissue_per_cell(_field(tiles, columns=4)) >= MIN_TISSUE).all()


def test_pale_tissue_beside_glass_is_tissue_and_glass_is_not():
    pale = [Image.blend(t, Image.new("RGB", t.size, (250, 250, 250)), 0.4) for t in _tiles("benign")]
    share = _tissue_per_cell(_field(pale, columns=4, glass=True))
    assert (share[0::2] >= MIN_TISSUE).all() and (share[1::2] < 0.05).all()


def test_the_margins_are_classified_and_top_regions_are_never_benign(slides, tmp_path):
    field = _field(_tiles("benign")[:4] + _tiles("malignant")[:4], columns=4)
    ragged = field.crop((0, 0, field.width - 50, field.height - 30))  # the last column and row are partial
    ragged.save(tmp_path / "ragged.png")
    result = slides.predict(tmp_path / "ragged.png")
    right = max(t.x + t.size for t in result.tiles)
    bottom = max(t.y + t.size for t in result.tiles)
    assert (right, bottom) == ragged.size
    assert all(t.status != BACKGROUND for t in result.tiles)
    regions = result.summary()["top_regions"]
    assert regions and all(r["decision"] != "benign" for r in regions)
    assert [r["p_malignant"] for r in regions] == sorted((r["p_malignant"] for r in regions), reverse=True)
