"""The training augmentations on real tiles: what each transform may and may not do to an image."""

from __future__ import annotations

import pytest
import torch
from conftest import fixture_images

from cancer_models.data.augment import (
    AUGMENTATIONS,
    ColorJitter,
    GaussianBlur,
    HEDJitter,
    RandomGeometry,
    build_augmentation,
)
from cancer_models.data.images import load_image, to_uint8_tensor


def tiles(task: str = "histopathology", size: int = 48, repeat: int = 1) -> torch.Tensor:
    """The fixture tiles of one task as a float [0, 1] batch."""
    batch = torch.stack([to_uint8_tensor(load_image(p), size) for p in fixture_images(task)]).float() / 255
    return batch.repeat(repeat, 1, 1, 1)


def orientations(image: torch.Tensor) -> list[torch.Tensor]:
    """The 8 flips and 90-degree rotations of a (C, H, W) square image."""
    rotations = [torch.rot90(image, k, dims=(1, 2)) for k in range(4)]
    return rotations + [r.flip(2) for r in rotations]


def which(candidates: list[torch.Tensor], output: torch.Tensor) -> list[int]:
    return [i for i, c in enumerate(candidates) if torch.allclose(c, output, atol=1e-4)]


def test_orientation_is_one_of_the_eight_and_all_eight_occur():
    torch.manual_seed(0)
    x = tiles(repeat=8)
    out = RandomGeometry(p=0.0)(x)
    seen = set()
    for image, result in zip(x, out):
        match = which(orientations(image), result)
        assert len(match) == 1, "each output must be exactly one flip/rotation of its input"
        seen.add(match[0])
    assert seen == set(range(8))


def test_ultrasound_geometry_never_turns_the_image_upside_down():
    torch.manual_seed(0)
    x = tiles("ultrasound", repeat=8)
    out = RandomGeometry(all_orientations=False, p=0.0)(x)
    flipped = [which([image, image.flip(2)], result) for image, result in zip(x, out)]
    assert all(len(m) == 1 for m in flipped)
    assert {m[0] for m in flipped} == {0, 1}, "both the image and its mirror image should occur"


def test_non_square_images_are_flipped_never_transposed():
    torch.manual_seed(0)
    x = tiles(size=48)[:, :, :, :40]
    out = RandomGeometry(p=0.0)(x)
    assert out.shape == x.shape
    for image, result in zip(x, out):
        assert len(which([image, image.flip(1), image.flip(2), image.flip(1).flip(2)], result)) == 1


@pytest.mark.parametrize("zoom, ratio", [(2.0, 4.0), (0.5, 0.25)])
def test_affine_scale_zooms_about_the_centre(zoom, ratio):
    x = torch.zeros(4, 3, 64, 64)
    x[:, :, 24:40, 24:40] = 1  # a 16 x 16 square in the middle
    geometry = RandomGeometry(all_orientations=False, degrees=0, translate=0, scale=(zoom, zoom), shear=0, p=1.0)
    out = geometry(x)[:, :, 16:48, 16:48]  # outside it, zooming out shows the reflected border
    area = (out[:, 0] > 0.5).sum(dim=(1, 2)).float()
    assert torch.allclose(area, torch.full_like(area, 256 * ratio), rtol=0.1)
    centre = out[:, 0, 12:20, 12:20]
    assert (centre > 0.99).all()


def test_affine_warp_changes_images_and_keeps_range():
    torch.manual_seed(0)
    x = tiles()
    out = RandomGeometry(p=1.0)(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert all(not which(orientations(image), result) for image, result in zip(x, out))


def test_colour_jitter_with_p_zero_is_the_identity():
    x = tiles()
    assert torch.equal(ColorJitter(0.5, 0.5, 0.5, 0.1, p=0.0)(x), x)


def test_brightness_scales_each_image_by_its_own_factor():
    torch.manual_seed(0)
    x = tiles() * 0.5  # no clipping at up to 2x
    out = ColorJitter(brightness=0.3)(x)
    ratio = out.flatten(1) / x.flatten(1).clamp_min(1e-3)
    per_image = torch.stack([r[v > 0.05].median() for r, v in zip(ratio, x.flatten(1))])
    for r, v, f in zip(ratio, x.flatten(1), per_image):
        assert torch.allclose(r[v > 0.05], f.expand_as(r[v > 0.05]), rtol=1e-3)
    assert ((per_image >= 0.7) & (per_image <= 1.3)).all()
    assert per_image.std() > 0.02, "images should get different factors"


def test_contrast_keeps_the_mean_grey_and_hue_keeps_grey_pixels_grey():
    torch.manual_seed(0)
    x = 0.25 + tiles() * 0.5
    contrast = ColorJitter(contrast=0.4)(x)
    luma = torch.tensor([0.299, 0.587, 0.114])
    assert torch.allclose(contrast.mean(dim=(2, 3)) @ luma, x.mean(dim=(2, 3)) @ luma, atol=1e-4)
    assert not torch.allclose(contrast, x, atol=1e-3)

    grey_images = x.mean(dim=1, keepdim=True).expand_as(x).contiguous()
    out = ColorJitter(saturation=0.5, hue=0.5)(grey_images)
    assert torch.allclose(out, grey_images, atol=1e-5)
    coloured = ColorJitter(hue=0.25)(x)
    assert not torch.allclose(coloured, x, atol=1e-2)
    assert torch.allclose(coloured.mean(dim=1), x.mean(dim=1), atol=1e-4), "rotating about grey keeps R + G + B"


def test_hed_jitter_leaves_unselected_images_and_white_background_alone():
    torch.manual_seed(0)
    x = tiles()
    assert torch.allclose(HEDJitter(p=0.0)(x), x, atol=1e-5)
    assert torch.allclose(HEDJitter(sigma=0.0, bias=0.0, p=1.0)(x), x, atol=1e-5)
    x[:, :, :8, :8] = 1  # a white (stain-free) corner: scaling stain amounts must keep it white
    out = HEDJitter(sigma=0.2, bias=0.0, p=1.0)(x)
    assert torch.allclose(out[:, :, :8, :8], torch.ones(1), atol=1e-5)
    assert (out - x).abs().amax(dim=(1, 2, 3)).min() > 0.01, "every image should be re-stained"


def test_hed_bias_shifts_every_pixels_optical_density_alike():
    torch.manual_seed(0)
    x = 0.3 + tiles() * 0.6  # no clamping at either end
    jitter = HEDJitter(sigma=0.0, bias=0.05, p=1.0)
    out = jitter(x)
    shift = (-out.log() + x.log()).flatten(2)  # optical density out - in, per pixel
    assert torch.allclose(shift, shift.mean(dim=2, keepdim=True), atol=1e-4)
    # ... and by at most `bias` of each stain: in stain space (od = hed @ rgb_from_hed, per row) the shift is beta.
    stain_shift = shift.mean(dim=2) @ jitter.hed_from_rgb
    assert stain_shift.abs().max() <= 0.05 + 1e-4 and stain_shift.abs().max() > 0.01


def test_blur_smooths_selected_tiles_keeps_their_mean_and_leaves_the_rest_exact():
    x = tiles(size=64)
    assert torch.equal(GaussianBlur(p=0.0)(x), x)
    blurred = GaussianBlur(sigma=(1.5, 1.5), p=1.0)(x)

    def roughness(t: torch.Tensor) -> torch.Tensor:
        return (t[..., 1:] - t[..., :-1]).abs().mean(dim=(1, 2, 3))

    assert (roughness(blurred) < 0.7 * roughness(x)).all()
    assert torch.allclose(blurred.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=0.01)


def test_log_uniform_zoom_magnifies_as_often_as_it_shrinks():
    torch.manual_seed(0)
    x = torch.zeros(2000, 1, 33, 33)
    x[:, :, 12:21, 12:21] = 1  # a 9 x 9 square at the centre: its area scales with zoom**2
    out = RandomGeometry(all_orientations=False, degrees=0, translate=0, scale=(0.5, 2.0), shear=0, p=1.0)(x)
    area = out.flatten(1).sum(dim=1)
    assert 0.45 < (area > 81).float().mean() < 0.55


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
def test_presets_keep_shape_range_and_are_reproducible(name):
    x = tiles()
    augment = build_augmentation(name)
    torch.manual_seed(1)
    first = augment(x)
    torch.manual_seed(1)
    assert torch.equal(augment(x), first)
    assert first.shape == x.shape and first.dtype == x.dtype
    assert first.min() >= 0 and first.max() <= 1
    assert torch.equal(first, x) == (name == "none")


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown augmentation 'sharpen'"):
        build_augmentation("sharpen")


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
def test_presets_never_read_tensor_values_back(name):
    """On the meta device (shapes, no data) every value read (.item(), masks, nonzero, `if t.all()`) raises:
    a preset that runs there never makes the CPU wait for a GPU result. (Copies of constants to the GPU,
    the other kind of wait, only show on a GPU: see the next test.)"""
    augment = build_augmentation(name).to("meta")
    out = augment(torch.empty(8, 3, 48, 48, device="meta"))
    assert out.shape == (8, 3, 48, 48)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("name", list(AUGMENTATIONS))
def test_presets_never_wait_for_the_gpu(name):
    x = tiles().cuda()
    augment = build_augmentation(name).cuda()
    augment(x)  # first call: lazy CUDA initialisation may synchronise
    torch.cuda.set_sync_debug_mode("error")
    try:
        augment(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")
