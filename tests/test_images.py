import io

import numpy as np
import pytest
import torch
from PIL import Image

from cancer_models import ImageError, Predictor, load_image
from cancer_models.data.images import MAX_PIXELS


@pytest.fixture(scope="module")
def tile(histo_image) -> Image.Image:
    return Image.open(histo_image).convert("RGB")


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def test_rgb_file_loads_unchanged(histo_image, tile):
    loaded = load_image(histo_image)
    assert loaded.mode == "RGB" and np.array_equal(np.asarray(loaded), np.asarray(tile))


@pytest.mark.parametrize(
    "make",
    [
        lambda t: t.convert("L"),
        lambda t: t.convert("LA"),
        lambda t: t.convert("P"),
        lambda t: t.convert("RGBA"),
        lambda t: t.convert("CMYK"),
        lambda t: t.convert("YCbCr"),
        lambda t: t.convert("I"),
        lambda t: t.convert("F"),
        lambda t: Image.fromarray(np.asarray(t.convert("L"), np.uint16) * 16),
    ],
    ids=["L", "LA", "P", "RGBA", "CMYK", "YCbCr", "I", "F", "I;16"],
)
def test_every_mode_becomes_rgb_with_the_same_content(tile, make):
    image = make(tile)
    loaded = load_image(image)
    assert loaded.mode == "RGB" and loaded.size == tile.size
    # The content survives: brightness correlates with the original's.
    gray = np.asarray(loaded.convert("L"), np.float64).ravel()
    original = np.asarray(tile.convert("L"), np.float64).ravel()
    assert np.corrcoef(gray, original)[0, 1] > 0.9


def test_bilevel_image_becomes_black_and_white(tile):
    out = np.asarray(load_image(tile.convert("1")))
    assert out.shape == (tile.height, tile.width, 3) and set(np.unique(out)) <= {0, 255}


def test_16bit_data_in_a_12bit_range_is_stretched_not_black():
    ramp = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (64, 1))
    for image in (Image.fromarray(ramp), ramp):
        out = np.asarray(load_image(image))
        assert out.min() == 0 and out.max() == 255
    png = encode(Image.fromarray(ramp), "PNG")
    assert np.asarray(load_image(png)).max() == 255


def test_transparent_pixels_become_white(tile):
    rgba = tile.convert("RGBA")
    alpha = np.full(tile.size[::-1], 255, np.uint8)
    alpha[:10] = 0
    rgba.putalpha(Image.fromarray(alpha))
    out = np.asarray(load_image(encode(rgba, "PNG")))
    assert (out[:10] == 255).all()
    assert np.array_equal(out[10:], np.asarray(tile)[10:])


def test_palette_with_transparency_is_composited_on_white():
    p = Image.new("P", (40, 40), 0)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.info["transparency"] = 0
    out = np.asarray(load_image(encode(p, "PNG", transparency=0)))
    assert (out == 255).all()


def test_exif_orientation_is_applied(tile):
    wide = tile.crop((0, 0, tile.width, tile.height // 2))  # wider than tall
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = encode(wide, "JPEG", exif=exif.tobytes(), quality=95)
    loaded = load_image(data)
    assert loaded.size == (wide.height, wide.width)
    expected = np.asarray(wide.transpose(Image.Transpose.ROTATE_270), np.float64)
    assert np.abs(np.asarray(loaded, np.float64) - expected).mean() < 6  # JPEG noise only


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((50, 60), np.uint8),
        np.zeros((50, 60, 1), np.uint8),
        np.zeros((50, 60, 3), np.uint8),
        np.zeros((50, 60, 4), np.uint8),
        np.full((50, 60), 3000, np.uint16),
        np.random.default_rng(0).random((50, 60, 3)),
        np.random.default_rng(0).random((50, 60)).astype(np.float32) * 1000,
        np.zeros((50, 60), bool),
    ],
    ids=["u8-2d", "u8-1ch", "u8-rgb", "u8-rgba", "u16", "float01", "float-large", "bool"],
)
def test_numpy_arrays(array):
    out = load_image(array)
    assert out.mode == "RGB" and out.size == (60, 50)


def test_float_array_in_unit_range_is_scaled_by_255():
    out = np.asarray(load_image(np.full((8, 8, 3), 0.5)))
    assert (out == 128).all()


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((4, 4, 5), np.uint8), "shape"),
        (np.zeros((0, 4), np.uint8), "empty"),
        (np.array([[np.nan, 2.0]]), "NaN"),
        (np.zeros((4, 4), np.complex64), "dtype"),
    ],
)
def test_bad_arrays(array, message):
    with pytest.raises(ImageError, match=message):
        load_image(array)


def test_empty_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(tmp_path / "empty.jpg")
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")


def test_non_image_files(tmp_path):
    (tmp_path / "notes.jpg").write_text("this is a text file, not a JPEG")
    with pytest.raises(ImageError, match="not an image file"):
        load_image(tmp_path / "notes.jpg")
    with pytest.raises(ImageError, match="not an image file"):
        load_image(np.random.default_rng(0).bytes(5000))


def test_truncated_jpeg(histo_image):
    data = histo_image.read_bytes()
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(data[: len(data) // 2])


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.png")


def test_unsupported_input_type():
    with pytest.raises(ImageError, match="from a dict"):
        load_image({"image": 1})


def test_decompression_bomb_is_refused_before_decoding():
    side = int(MAX_PIXELS**0.5) + 100
    bomb = encode(Image.new("1", (side, side)), "PNG")  # a few kB that decode to > MAX_PIXELS
    assert len(bomb) < 2_000_000
    with pytest.raises(ImageError, match="megapixels|too large"):
        load_image(bomb)


def test_large_but_allowed_image_is_classified_like_the_original(small_cnn, tile):
    predictor = Predictor(small_cnn)
    big = predictor.predict(encode(tile.resize((3000, 2000)), "JPEG")).malignant_probability
    assert big == pytest.approx(predictor.predict(tile).malignant_probability, abs=0.05)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I", "F", "I;16"])
def test_predictor_accepts_every_mode_and_sees_the_same_picture(small_cnn, tile, mode):
    image = tile.convert(mode) if mode != "I;16" else Image.fromarray(np.asarray(tile.convert("L"), np.uint16) * 256)
    grey = mode in ("L", "LA", "I", "F", "I;16")
    reference = tile.convert("L").convert("RGB") if grey else tile
    predictor = Predictor(small_cnn)
    expected = predictor.predict(reference).malignant_probability
    assert predictor.predict(image).malignant_probability == pytest.approx(expected, abs=0.03)


def test_normalize_leaves_its_input_alone():
    from cancer_models.models.preprocessing import normalize

    batch = torch.full((1, 3, 2, 2), 255.0)
    out = normalize(batch, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert torch.equal(batch, torch.full((1, 3, 2, 2), 255.0))
    assert torch.allclose(out, torch.ones_like(out))


def test_shades_of_gray_removes_a_colour_cast_and_leaves_grey_alone():
    from conftest import fixture_images

    from cancer_models.data.images import to_uint8_tensor
    from cancer_models.models.preprocessing import shades_of_gray

    lesions = torch.stack([to_uint8_tensor(load_image(p), 96) for p in fixture_images("dermoscopy")]).float()
    cast = lesions * torch.tensor([1.0, 0.8, 0.55]).view(1, 3, 1, 1)  # a warm light, darkening only (no clipping)

    def chromaticity(x):
        return x / x.sum(dim=1, keepdim=True).clamp(min=1)

    before = (chromaticity(cast) - chromaticity(lesions)).abs().mean()
    after = (chromaticity(shades_of_gray(cast)) - chromaticity(shades_of_gray(lesions))).abs().mean()
    assert before > 0.05 and after < 0.01 * before
    grey = lesions.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    assert torch.allclose(shades_of_gray(grey), grey, atol=1e-3)
    assert shades_of_gray(torch.zeros(1, 3, 8, 8)).abs().max() == 0  # a black image: no division by zero


def test_optical_density_balance_takes_out_a_labs_stain_strength_and_leaves_glass_alone():
    from conftest import fixture_images

    from cancer_models.data.images import to_uint8_tensor
    from cancer_models.models.preprocessing import REFERENCE_OD, TISSUE_OD, optical_density_balance

    tiles = torch.stack([to_uint8_tensor(load_image(p), 96) for p in fixture_images("histopathology")]).float()
    od = -torch.log((tiles + 1) / 256)
    # Another lab: eosin and haematoxylin 1.4 and 1.2 times as dense in the channels they absorb most.
    stronger = (256 * torch.exp(-od * torch.tensor([1.2, 1.4, 1.2]).view(1, 3, 1, 1)) - 1).clamp(0, 255).round()
    before = (stronger - tiles).abs().mean()
    after = (optical_density_balance(stronger) - optical_density_balance(tiles)).abs().mean()
    assert before > 10 and after < 0.15 * before
    # Each channel's mean optical density over tissue comes to the reference.
    balanced = -torch.log((optical_density_balance(tiles) + 1) / 256)
    tissue = (od.sum(dim=1, keepdim=True) > TISSUE_OD).float()
    means = (balanced * tissue).sum(dim=(2, 3)) / tissue.sum(dim=(2, 3))
    assert torch.allclose(means, torch.tensor(REFERENCE_OD).expand_as(means), atol=0.03)
    white = torch.full((1, 3, 8, 8), 255.0)  # glass: no tissue, nothing to scale
    assert torch.equal(optical_density_balance(white), white)


def test_colour_constancy_is_part_of_the_config_and_of_every_input(small_cnn, histo_image):
    import copy
    import dataclasses

    from cancer_models import ConfigError, ModelConfig
    from cancer_models.models.preprocessing import model_input, normalize, shades_of_gray

    with pytest.raises(ConfigError, match="colour_constancy"):
        ModelConfig(architecture="cancer_cnn", colour_constancy="grey_world")
    config = dataclasses.replace(small_cnn.config, colour_constancy="shades_of_gray")
    assert ModelConfig.from_dict(config.to_dict()).colour_constancy == "shades_of_gray"
    batch = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8) // torch.tensor([1, 2, 3]).view(1, 3, 1, 1)
    assert torch.equal(model_input(batch, config), normalize(shades_of_gray(batch), config.mean, config.std))
    assert torch.equal(model_input(batch, small_cnn.config), normalize(batch, config.mean, config.std))
    balanced = copy.deepcopy(small_cnn)
    balanced.config.colour_constancy = "shades_of_gray"
    maps = [Predictor(m).explain(histo_image).heatmap for m in (small_cnn, balanced)]
    assert not np.allclose(*maps, atol=1e-3)  # Grad-CAM sees the balanced image too
