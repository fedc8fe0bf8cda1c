"""Mammograms: one canonical form whatever side, polarity or labels they come with; DICOM MG read as a reader
needs it (laterality, view, chest-wall side, FOR PROCESSING, no tomosynthesis), and no patient attribute out."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FIXTURES, fixture_images
from PIL import Image, ImageDraw, ImageOps
from scipy import ndimage

from cancer_models import DataError, ImageError, load_image
from cancer_models.data.augment import build_augmentation, tta_views_for
from cancer_models.data.decoding import decode_split
from cancer_models.data.image_sets import load_splits
from cancer_models.data.images import prepare_image, to_uint8_tensor
from cancer_models.data.mammography import breast_mask, canonical_mammogram, view_from_name
from cancer_models.data.spec import DataSpec
from cancer_models.evaluation.evaluate import evaluate, write_report
from cancer_models.evaluation.localization import explanation_quality
from cancer_models.inference.predict import Predictor


def _mammograms() -> list[Path]:
    return [p for split in ("train", "validation", "test") for p in fixture_images("mammography", split)]


def _difference(a: Image.Image, b: Image.Image, size: int = 128) -> float:
    """Mean absolute grey difference (0-255) at a common size."""
    x, y = (np.asarray(im.convert("L").resize((size, size)), dtype=float) for im in (a, b))
    return float(np.abs(x - y).mean())


@pytest.mark.parametrize("path", _mammograms(), ids=lambda p: p.name)
def test_side_polarity_and_a_second_pass_do_not_change_the_canonical_form(path):
    image = Image.open(path)
    canonical = canonical_mammogram(image)
    assert canonical.box is not None and canonical.image.width == canonical.image.height
    grey = np.asarray(canonical.image.convert("L"), dtype=float)
    half = grey.shape[1] // 2
    assert grey[:, :half].mean() > grey[:, half:].mean()  # chest wall on the left
    assert grey[:, -3:].mean() < 10  # a dark background on the nipple side
    for variant in (ImageOps.mirror(image), ImageOps.invert(image.convert("L")), canonical.image):
        assert _difference(canonical_mammogram(variant).image, canonical.image) < 4, variant


def test_labels_and_markers_beside_the_breast_are_removed():
    image = Image.open(fixture_images("mammography", "train")[0]).convert("L")
    canonical = canonical_mammogram(image)
    labelled = image.copy()
    draw = ImageDraw.Draw(labelled)
    side = 255 if canonical.inverted else 0  # on the background, whichever its polarity
    probe = np.asarray(image)
    corner = (0, 0) if canonical.flipped else (image.width - 70, 0)  # a background corner, away from the breast
    assert abs(int(probe[5:20, corner[0] + 5 : corner[0] + 60].mean()) - side) < 40
    draw.rectangle([corner[0] + 8, 6, corner[0] + 60, 18], fill=255 - side)  # burned-in text: "R MLO"
    assert _difference(canonical_mammogram(labelled).image, canonical.image) < 0.5


def test_a_blank_or_foreign_image_is_left_for_the_rejection_check():
    assert canonical_mammogram(Image.new("L", (300, 200), 0)).box is None
    assert not breast_mask(np.zeros((50, 50), np.uint8)).any()


def test_training_and_prediction_see_the_same_canonical_pixels():
    splits = load_splits(DataSpec([str(FIXTURES / "mammography")]))
    decoded = decode_split(splits["test"], 96, preprocessing="mammogram")
    from datasets import Image as ImageFeature

    first = splits["test"].cast_column("image", ImageFeature(decode=False))[0]["image"]["path"]
    expected = to_uint8_tensor(prepare_image(load_image(first), "mammogram"), 96)
    assert torch.equal(decoded.images[0], expected)
    assert not torch.equal(decoded.images[0], to_uint8_tensor(load_image(first), 96))


def test_augmentation_never_moves_the_chest_wall_to_the_right():
    torch.manual_seed(0)
    augment = build_augmentation("mammography")
    assert tta_views_for(augment) == "vflip"
    image = canonical_mammogram(Image.open(fixture_images("mammography", "test")[0])).image
    batch = to_uint8_tensor(image, 64)[None].float().div(255).repeat(64, 1, 1, 1)
    out = augment(batch)
    left, right = out[..., :32].mean(dim=(1, 2, 3)), out[..., 32:].mean(dim=(1, 2, 3))
    assert (left > right).all()
    assert not torch.allclose(out[0], out[1])  # it does augment


def _mammogram_dicom(tmp_path, pixels: np.ndarray, **attributes):
    from test_dicom import write_dicom

    return write_dicom(tmp_path / "mg.dcm", pixels, attributes.pop("photometric", "MONOCHROME2"), Modality="MG",
                       **attributes)  # fmt: skip


def test_a_dicom_mammogram_gives_its_side_and_view_and_is_turned_by_its_orientation(tmp_path):
    from test_dicom import PATIENT

    grey = np.asarray(Image.open(fixture_images("mammography", "test")[0]).convert("L"))
    canonical = canonical_mammogram(Image.fromarray(grey))
    # As a right breast is hung: mirrored, chest wall on the right, stored 12-bit MONOCHROME1 with a window.
    shown = np.asarray(ImageOps.mirror(canonical.image.convert("L")), dtype=np.uint16)
    stored = ((255 - shown) * 16).astype(np.uint16)
    dcm = _mammogram_dicom(
        tmp_path, stored, photometric="MONOCHROME1", BitsStored=12, HighBit=11, WindowCenter=2040, WindowWidth=4080,
        ImageLaterality="R", ViewPosition="MLO", PatientOrientation=["P", "L"],
    )  # fmt: skip
    image = load_image(dcm)
    assert (image.info["dicom_laterality"], image.info["dicom_view"], image.info["dicom_chest_wall"]) == (
        "R", "MLO", "right"
    )  # fmt: skip
    assert _difference(prepare_image(image, "mammogram"), canonical.image) < 3
    assert PATIENT.split("^")[0] not in repr(image.info) and "12345" not in repr(image.info)


def test_for_processing_images_are_windowed_from_their_own_range_and_say_so(tmp_path):
    grey = np.asarray(canonical_mammogram(Image.open(fixture_images("mammography", "test")[1])).image.convert("L"))
    raw = (grey.astype(np.uint16) * 40 + 3000).astype(np.uint16)  # detector counts, far from a display range
    dcm = _mammogram_dicom(tmp_path, raw, PresentationIntentType="FOR PROCESSING")
    image = load_image(dcm)
    assert "FOR PROCESSING" in image.info["dicom_note"]
    shown = np.asarray(image.convert("L"), dtype=float)
    assert shown.max() >= 250 and shown.min() <= 5
    assert np.corrcoef(shown.ravel(), grey.ravel())[0, 1] > 0.99


def test_tomosynthesis_stacks_are_refused_with_a_reason(tmp_path):
    grey = np.asarray(Image.open(fixture_images("mammography", "test")[0]).convert("L"))
    dcm = _mammogram_dicom(tmp_path, np.stack([grey, grey, grey]), frames=3)
    with pytest.raises(ImageError, match="tomosynthesis"):
        load_image(dcm)


def test_views_are_read_from_file_names_only_where_they_say_one():
    assert view_from_name("scans/R_CC_0012.png") == "CC"
    assert view_from_name("left-mlo.dcm") == "MLO"
    # Neither view as a word: the release's own names, a word that merely contains the letters, or both views.
    for name in ("rsna_105_1232990271.jpg", "accc.png", "XCCL.png", "cc_and_mlo.png"):
        assert view_from_name(name) is None, name


def _mammography_model(small_cnn):
    small_cnn.config.preprocessing = "mammogram"
    return small_cnn


def test_evaluation_reports_each_view_the_file_names_give(small_cnn, tmp_path):
    # The test fixtures renamed as a reader's export would name them: two views of each patient's breast.
    folder = tmp_path / "views"
    for i, path in enumerate(fixture_images("mammography", "test") + fixture_images("mammography", "train")):
        target = folder / path.parent.name / f"case{i // 2}_{['CC', 'MLO'][i % 2]}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    model = _mammography_model(small_cnn)
    result = evaluate(model, folder)
    metrics, scored = result.to_dict(), result.images
    assert {view: m["n"] for view, m in metrics["views"].items()} == {"CC": 4, "MLO": 4}
    cc = [p for p, path in zip(scored.p_malignant, scored.paths, strict=True) if path.endswith("_CC.jpg")]
    assert (
        metrics["views"]["CC"]["n_malignant"]
        == sum(1 for path in scored.paths if path.endswith("_CC.jpg") and "/malignant/" in path)
        and len(cc) == 4
    )
    write_report(tmp_path / "report", model, metrics, scored, "model", "views")
    assert "## CC views (4 images)" in (tmp_path / "report" / "report.md").read_text()
    # The release's own names carry no view: nothing per view is claimed.
    assert "views" not in evaluate(model, FIXTURES / "mammography").metrics


def test_explanations_are_measured_against_the_breast_the_preprocessing_keeps(small_cnn):
    model = _mammography_model(small_cnn)
    images = fixture_images("mammography", "test")
    report = explanation_quality(Predictor(model), images, None, ["gradcam"])
    # The same share computed here from the canonical image's own black background.
    shares, breast = [], []
    for path in images:
        explanation = Predictor(model).explain(path, method="gradcam")
        inside = ndimage.binary_fill_holes(np.asarray(explanation.image.convert("L")) > 0)
        shares.append(explanation.heatmap[inside].sum() / explanation.heatmap.sum())
        breast.append(inside.mean())
    assert report["n"] == len(images)
    assert report["gradcam"]["heat_in_lesion"]["mean"] == pytest.approx(np.mean(shares), abs=0.02)
    assert report["lesion_share"]["mean"] == pytest.approx(np.mean(breast), abs=0.02)
    assert 0.3 < report["lesion_share"]["mean"] < 0.95  # the breast, not the whole square
    small_cnn.config.preprocessing = "none"
    with pytest.raises(DataError, match="mammography model"):
        explanation_quality(Predictor(small_cnn), images, None, ["gradcam"])
