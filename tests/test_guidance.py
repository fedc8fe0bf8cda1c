"""Mask-guided training on real ultrasound images and their BUSI lesion masks: masks load at the images' paths,
move with the augmentation, and the penalty moves the app's Grad-CAM map into the lesion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FIXTURES

from cancer_models import create_model
from cancer_models.data.augment import ColorJitter, RandomGeometry
from cancer_models.data.decoding import decode_split
from cancer_models.data.image_sets import load_splits
from cancer_models.data.images import load_image, to_uint8_tensor
from cancer_models.data.spec import DataSpec
from cancer_models.errors import DataError
from cancer_models.inference.explain import compute_cam
from cancer_models.models.preprocessing import normalize
from cancer_models.training.guidance import outside_lesion_share, tap_activations

ULTRASOUND, MASKS = FIXTURES / "ultrasound", FIXTURES / "ultrasound_masks"


@pytest.fixture(scope="module")
def ultrasound_train():
    splits = load_splits(DataSpec([str(ULTRASOUND)], mask_dirs=[str(MASKS)]))
    return splits["train"], decode_split(splits["train"], 64)


def test_masks_load_at_the_images_paths(ultrasound_train):
    ds, decoded = ultrasound_train
    assert decoded.masks.shape == (8, 1, 64, 64) and decoded.masks.dtype == torch.uint8
    for path, mask in zip(ds["mask"], decoded.masks, strict=True):
        expected = to_uint8_tensor(load_image(path), 64)[0]
        assert torch.equal(mask[0], expected)
        assert mask.any() == ("normal_" not in path)  # a normal breast has no lesion


def test_images_without_a_mask_file_have_none_and_mask_folders_pair_with_sources(tmp_path):
    (tmp_path / "train").mkdir()
    splits = load_splits(DataSpec([str(ULTRASOUND)], mask_dirs=[str(tmp_path)]))
    assert set(splits["train"]["mask"]) == {""}
    assert decode_split(splits["train"], 32).masks is None
    with pytest.raises(DataError, match="one per source"):
        load_splits(DataSpec([str(ULTRASOUND)], mask_dirs=[str(MASKS), str(MASKS)]))
    with pytest.raises(DataError, match="does not exist"):
        load_splits(DataSpec([str(ULTRASOUND)], mask_dirs=[str(tmp_path / "missing")]))


def test_masks_move_with_the_geometry_and_keep_their_values(ultrasound_train):
    _, decoded = ultrasound_train
    images = decoded.images.float() / 255
    stacked = torch.cat([images, images[:, :1]], dim=1)  # a "mask" equal to the red channel
    torch.manual_seed(0)
    warped = RandomGeometry(all_orientations=False, p=1.0)(stacked)
    assert torch.allclose(warped[:, 3], warped[:, 0], atol=1e-6)
    assert not torch.allclose(warped[:, 0], images[:, 0], atol=1e-2)
    recoloured = ColorJitter(0.4, 0.4, 0.0, 0.0, p=1.0)(warped)
    assert torch.equal(recoloured[:, 3], warped[:, 3])
    assert not torch.allclose(recoloured[:, 0], warped[:, 0], atol=1e-2)


def test_the_penalty_is_the_share_of_grad_cam_outside_the_lesion():
    def penalty(masks: torch.Tensor) -> torch.Tensor:
        activation = torch.zeros(len(masks), 2, 4, 4)
        activation[:, :, 0, 0] = 1.0  # the map lights one cell
        activation.requires_grad_(True)
        scores = activation.mean(dim=(2, 3)).sum(dim=1)  # positive weights: Grad-CAM equals the activation
        return outside_lesion_share([activation], scores, masks)

    masks = torch.zeros(3, 1, 8, 8)
    masks[0, :, :2, :2] = 1  # the lit cell
    masks[1, :, 6:, 6:] = 1  # the opposite corner
    floor = 0.01  # what every cell adds to the max-scaled map
    on, beside = penalty(masks[:1]), penalty(masks[1:2])
    assert on.item() == pytest.approx(15 * floor / (1 + 16 * floor), abs=1e-6)
    assert beside.item() == pytest.approx(1 - floor / (1 + 16 * floor), abs=1e-6)
    # The third image has no lesion: it adds nothing, and a batch's penalty is over the images with one.
    both = penalty(masks)
    assert both.item() == pytest.approx((on + beside).item() / 2) and both.requires_grad
    assert penalty(masks[2:]).item() == 0.0


def heat_in_lesion(model, x, targets, masks) -> float:
    """Mean share of the app's Grad-CAM (pytorch-grad-cam, the true class) inside the lesion."""
    shares = []
    for image, target, mask in zip(x, targets, masks, strict=True):
        if mask.any():
            cam = compute_cam(model, image[None], int(target))
            lesion = torch.nn.functional.interpolate(mask[None].float(), cam.shape)[0, 0].numpy() > 0.5
            shares.append(cam[lesion].sum() / max(cam.sum(), 1e-8))
    return float(np.mean(shares))


def test_mask_guided_steps_move_the_apps_map_into_the_lesion(ultrasound_train):
    _, decoded = ultrasound_train
    torch.manual_seed(0)
    model = create_model("cancer_cnn", input_size=64)
    # An 8x8 map at 64 px: at 2x2 (the last stage) a lesion of 2-11% of the image fills no cell.
    model.config.cam_layers = ["stage3.1"]
    x = normalize(decoded.images, model.config.mean, model.config.std)
    masks = decoded.masks.float() / 255
    before = heat_in_lesion(model.eval(), x, decoded.targets, masks)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(30):
        with tap_activations(model.cam_target_layers()) as activations:
            logits = model(x)
        chosen = logits.gather(1, decoded.targets[:, None]).squeeze(1)
        loss = outside_lesion_share(activations, chosen, masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = heat_in_lesion(model.eval(), x, decoded.targets, masks)
    assert after > before + 0.15, (before, after)
