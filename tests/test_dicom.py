"""DICOM files in: pixels as a viewer shows them, the same answer as the same pixels in PNG, clear errors for
files without an image, and no patient attribute anywhere in what comes out."""

import io
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import fixture_images
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, SecondaryCaptureImageStorage, generate_uid

from cancer_models import ImageError, Predictor, load_image, load_pretrained

ROOT = Path(__file__).resolve().parents[1]
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
PATIENT = "Doe^Jane^Secret"


def write_dicom(path: Path, pixels: np.ndarray, photometric: str, frames: int = 1, **attributes) -> Path:
    """A minimal DICOM file of ``pixels`` (H, W), (H, W, 3) or (F, H, W[, 3]) with a patient name."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.Modality = PATIENT, "ID-12345", attributes.pop("Modality", "US")
    colour = pixels.shape[-1] == 3 and pixels.ndim == (4 if frames > 1 else 3)
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = int(np.issubdtype(pixels.dtype, np.signedinteger))
    if colour:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    for key, value in attributes.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def tile() -> np.ndarray:
    return np.asarray(load_image(fixture_images("ultrasound", "test")[0]))


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(load_pretrained(ROOT / "models" / "ultrasound-cancer-cnn"))


def test_rgb_dicom_gets_the_same_answer_as_the_png(tmp_path, tile, predictor):
    png = tmp_path / "image.png"
    Image.fromarray(tile).save(png)
    dcm = write_dicom(tmp_path / "image.dcm", tile, "RGB")
    assert np.array_equal(np.asarray(load_image(dcm)), tile)
    a, b = predictor.predict([str(png), str(dcm)])
    assert a == b


def test_grey_dicoms_monochrome1_16_bit_window_and_frames(tmp_path, tile):
    grey = tile[..., 0]
    m2 = write_dicom(tmp_path / "m2.dcm", grey, "MONOCHROME2")
    assert np.array_equal(np.asarray(load_image(m2))[..., 0], grey)
    m1 = write_dicom(tmp_path / "m1.dcm", 255 - grey, "MONOCHROME1")  # low values white: shown inverted
    assert np.array_equal(np.asarray(load_image(m1))[..., 0], grey)
    # 16-bit signed values with a rescale and a window that maps exactly onto 0-255.
    stored = (grey.astype(np.int16) * 4 - 300).astype(np.int16)
    windowed = write_dicom(
        tmp_path / "w.dcm", stored, "MONOCHROME2", RescaleSlope=1, RescaleIntercept=-1000,
        WindowCenter=-1300 + 510 + 0.5, WindowWidth=1021,
    )  # fmt: skip
    shown = np.asarray(load_image(windowed))[..., 0].astype(int)
    assert np.abs(shown - grey.astype(int)).max() <= 1
    frames = np.stack([grey, 255 - grey, grey // 2])
    multi = write_dicom(tmp_path / "multi.dcm", frames, "MONOCHROME2", frames=3)
    assert np.array_equal(np.asarray(load_image(multi, frame=1))[..., 0], 255 - grey)
    assert load_image(multi).info["frames"] == 3
    with pytest.raises(ImageError, match="has 3 frame"):
        load_image(multi, frame=3)


def test_jpeg_compressed_dicom_and_pydicoms_own_files(tmp_path, tile):
    buffer = io.BytesIO()
    Image.fromarray(tile).save(buffer, format="JPEG", quality=95)
    ds = pydicom.dcmread(write_dicom(tmp_path / "plain.dcm", tile, "RGB"))
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PixelData = pydicom.encaps.encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "jpeg.dcm")
    decoded = np.asarray(load_image(tmp_path / "jpeg.dcm")).astype(int)
    assert np.abs(decoded - tile.astype(int)).mean() < 4  # lossy, but the same picture
    for name in ("MR_small_RLE.dcm", "examples_palette.dcm", "examples_ybr_color.dcm"):
        image = load_image(PYDICOM_FILES / name)
        assert image.mode == "RGB" and np.asarray(image).std() > 5, name
    plain = np.asarray(load_image(PYDICOM_FILES / "MR_small.dcm"))
    for compressed in ("MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"):
        assert np.array_equal(np.asarray(load_image(PYDICOM_FILES / compressed)), plain), compressed
    # No window in the file: the whole signed 16-bit range is shown, so CT values sit near mid-grey.
    ct = np.asarray(load_image(PYDICOM_FILES / "CT_small.dcm"))
    assert 0 < ct.std() < 5 and abs(ct.mean() - 128) < 8


@pytest.mark.parametrize(
    "name, message",
    [
        ("rtplan.dcm", "without an image"),
        ("test-SR.dcm", "without an image"),
        ("MR_truncated.dcm", "cannot be decoded"),
        ("rtstruct.dcm", "not a readable DICOM"),
    ],
)
def test_dicom_files_without_a_usable_image_get_a_clear_error(name, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ImageError, match=message):
            load_image(PYDICOM_FILES / name)


def test_the_patient_name_appears_nowhere(tmp_path, tile, predictor, capsys):
    dcm = write_dicom(tmp_path / "named.dcm", tile, "RGB")
    prediction = predictor.predict(str(dcm))
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(dcm.read_bytes()[:-5000])
    with pytest.raises(ImageError) as error:
        load_image(broken)
    out = capsys.readouterr()
    for text in (repr(prediction), str(error.value), out.out, out.err, repr(load_image(dcm).info)):
        assert "Doe" not in text and "12345" not in text


def test_the_modality_attribute_is_a_hint_that_can_refuse(tmp_path, tile, predictor):
    ct = write_dicom(tmp_path / "ct.dcm", tile, "RGB", Modality="CT")
    p = predictor.predict(str(ct))
    assert p.decision == "not recognised" and "modality CT" in p.refused_because
    us = write_dicom(tmp_path / "us.dcm", tile, "RGB", Modality="US")
    assert predictor.predict(str(us)).refused_because is None
    # The image check still runs: a photograph labelled ultrasound is refused all the same.
    photo = np.asarray(load_image(PYDICOM_FILES.parent / "test_files" / "SC_rgb_jpeg.dcm").resize((160, 160)))
    fake = write_dicom(tmp_path / "fake.dcm", np.ascontiguousarray(photo), "RGB", Modality="US")
    assert predictor.predict(str(fake)).decision == "not recognised"


def test_a_folder_of_dicom_files_is_a_data_set(tmp_path):
    """Training and evaluation read DICOM folders in the imagefolder layout, with the same pixels."""
    from conftest import FIXTURES
    from datasets import Image as ImageFeature

    from cancer_models.data.decoding import decode_split
    from cancer_models.data.image_sets import load_splits
    from cancer_models.data.spec import DataSpec

    source = FIXTURES / "histopathology"
    for jpg in source.rglob("*.jpg"):
        target = (tmp_path / jpg.relative_to(source)).with_suffix(".dcm")
        target.parent.mkdir(parents=True, exist_ok=True)
        write_dicom(target, np.asarray(Image.open(jpg).convert("RGB")), "RGB")
    decoded = {}
    for root in (source, tmp_path):
        test = load_splits(DataSpec([str(root)]))["test"]
        names = [Path(i["path"]).stem for i in test.cast_column("image", ImageFeature(decode=False))["image"]]
        split = decode_split(test, 96)
        decoded[root] = {n: (split.images[k], int(split.targets[k])) for k, n in enumerate(names)}
    assert decoded[source].keys() == decoded[tmp_path].keys() and len(decoded[source]) == 6
    for name, (pixels, target) in decoded[source].items():
        assert target == decoded[tmp_path][name][1] and (pixels == decoded[tmp_path][name][0]).all()


def test_without_a_window_the_stored_range_is_shown_as_is(tmp_path, tile, predictor):
    """The same pixels answer the same as DICOM as as PNG: nothing is stretched to the image's own range."""
    grey = (tile[..., 0] // 2 + 40).astype(np.uint8)  # 40..167: a stretch would change every pixel
    png = tmp_path / "grey.png"
    Image.fromarray(grey).save(png)
    m2 = write_dicom(tmp_path / "m2.dcm", grey, "MONOCHROME2")
    m1 = write_dicom(tmp_path / "m1.dcm", 255 - grey, "MONOCHROME1")
    two = write_dicom(tmp_path / "two.dcm", np.stack([grey, grey]), "MONOCHROME2", frames=2)
    for dcm in (m2, m1, two):
        assert np.array_equal(np.asarray(load_image(dcm))[..., 0], grey), dcm.name
    reference, *as_dicom = predictor.predict([str(png), str(m2), str(m1), str(two)])
    for p in as_dicom:
        assert p.ood_score == pytest.approx(reference.ood_score, abs=0.02)
        if reference.in_distribution:
            assert p.malignant_probability == pytest.approx(reference.malignant_probability, abs=0.02)
    # 12 bits stored in 16: 0..4095 is the full grey range.
    twelve = write_dicom(tmp_path / "12.dcm", (grey.astype(np.uint16) * 16), "MONOCHROME2", BitsStored=12, HighBit=11)
    assert np.abs(np.asarray(load_image(twelve))[..., 0].astype(int) - grey.astype(int)).max() <= 1


def _region(x0, y0, x1, y1, spatial=1, data_type=1):
    item = pydicom.Dataset()
    item.RegionLocationMinX0, item.RegionLocationMinY0 = x0, y0
    item.RegionLocationMaxX1, item.RegionLocationMaxY1 = x1, y1
    item.RegionSpatialFormat, item.RegionDataType = spatial, data_type
    return item


def test_a_scanner_screen_is_cropped_to_its_stated_ultrasound_region(tmp_path, tile, predictor):
    h, w = tile.shape[:2]
    screen = np.zeros((h + 90, w + 140, 3), np.uint8)
    screen[20:40, 10:200] = 255  # burned-in text
    screen[60 : 60 + h, 100 : 100 + w] = tile  # the B-mode image
    screen[60 : 60 + h, 20:40] = np.linspace(0, 255, h, dtype=np.uint8)[:, None, None]  # a grey bar
    regions = [_region(100, 60, 100 + w - 1, 60 + h - 1), _region(0, 0, 30, 30, spatial=3, data_type=3)]
    dcm = write_dicom(tmp_path / "screen.dcm", screen, "RGB", SequenceOfUltrasoundRegions=regions)
    image = load_image(dcm)
    assert np.array_equal(np.asarray(image), tile)
    assert image.info["dicom_region"] == (100, 60, 100 + w, 60 + h)
    assert predictor.predict(str(dcm)) == predictor.predict(tile)
    plain = write_dicom(tmp_path / "plain.dcm", screen, "RGB")  # no regions stated: the whole screen
    assert load_image(plain).size == (w + 140, h + 90) and load_image(plain).info["dicom_region"] is None


def test_the_modality_names_the_closest_model_when_all_refuse(tmp_path):
    from cancer_models.inference.routing import route

    predictors = {
        task: Predictor(load_pretrained(ROOT / "models" / f"{task}-cancer-cnn"))
        for task in ("histopathology", "dermoscopy", "ultrasound")
    }
    photo = np.asarray(load_image(PYDICOM_FILES / "SC_rgb_jpeg.dcm").resize((160, 160)))
    dcm = write_dicom(tmp_path / "photo.dcm", np.ascontiguousarray(photo), "RGB", Modality="US")
    chosen = route(predictors, str(dcm))
    assert chosen.model is None and chosen.closest == "ultrasound"
    assert "an ultrasound image" in predictors["dermoscopy"].predict(str(dcm)).refused_because
