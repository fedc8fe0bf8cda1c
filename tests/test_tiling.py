"""Images from another lab at their native scale are cut into tiles of the model's physical scale for training
and evaluation, as slides are when predicting."""

import csv
from pathlib import Path

import pytest
from conftest import fixture_images
from datasets import Image as ImageFeature
from PIL import Image

from cancer_models import DataError, load_pretrained
from cancer_models.cli import main as cli_main
from cancer_models.data.image_sets import load_splits
from cancer_models.data.spec import DataSpec, parse_source_mpp
from cancer_models.evaluation.evaluate import evaluate
from cancer_models.settings import TileSpec

TILE = TileSpec(160, 1.25)  # the LC25000 tiles' scale: 200 um across


def _lab_folder(root: Path) -> Path:
    """A second lab's fields, 775 x 522 px at 0.62 um per pixel (GlaS's size), both classes in every split, a
    patient per field; two more training fields whose right half is glass."""
    tiles = fixture_images("histopathology", "train")
    rows = {split: [] for split in ("train", "validation", "test")}
    for i, split in enumerate(["train", "train", "validation", "validation", "test", "test", "train", "train"]):
        label = "malignant" if i % 2 else "benign"
        field = Image.open(tiles[i]).convert("RGB").resize((775, 522), Image.BICUBIC)
        if i >= 6:
            field.paste((242, 242, 240), (388, 0, 775, 522))  # glass
        path = root / split / label / f"field{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        field.save(path)
        rows[split].append([f"{label}/field{i}.png", label, f"patient{i}", label, "another lab"])
    for split, lines in rows.items():
        with open(root / split / "metadata.csv", "w", newline="") as f:
            csv.writer(f).writerows([["file_name", "label", "group", "subtype", "source"], *lines])
    return root


def test_fields_are_cut_into_tissue_tiles_of_the_models_physical_size(tmp_path):
    folder = _lab_folder(tmp_path / "lab")
    splits = load_splits(DataSpec([str(folder)], tile=TILE, source_mpp={"lab": 0.62}))
    train = splits["train"]
    # 160 px at 1.25 um = 200 um = 323 px at 0.62 um: a 3 x 2 grid with the last column and row shifted in.
    assert {im.size for im in train["image"]} == {(323, 323)}
    per_field = {}
    for path, group in zip(
        train.cast_column("image", ImageFeature(decode=False))["image"], train["group"], strict=True
    ):
        name, _, corner = path["path"].rpartition("#")
        per_field.setdefault(Path(name).name, []).append(corner)
        assert group.endswith(Path(name).stem.replace("field", "patient"))  # a tile keeps its patient
    assert sorted(per_field["field0.png"]) == sorted(f"{x},{y}" for x in (0, 323, 452) for y in (0, 199))
    assert sorted(per_field["field6.png"]) == ["0,0", "0,199"]  # tiles mostly over the glass half are dropped
    # Without the source's scale the fields are used whole.
    assert len(load_splits(DataSpec([str(folder)], tile=TILE))["train"]) == 4 and len(train) == 16


def test_a_model_trained_on_tiles_records_its_scale(tmp_path, capsys):
    folder = _lab_folder(tmp_path / "lab")
    fast = ["--input-size", "64", "--batch-size", "6", "--warmup-epochs", "0.5", "--epochs", "1"]
    args = ["--data", str(folder), "--tile-size", "160", "--tile-mpp", "1.25", "--source-mpp", "lab=0.62"]
    assert cli_main(["train", *args, *fast, "--output-dir", str(tmp_path / "run")]) == 0
    model = load_pretrained(tmp_path / "run")
    assert model.config.tile == TILE and model.config.training.splits["train"] == 16
    # Evaluation cuts the fields as training did: the test split's two fields are twelve tiles.
    result = evaluate(model, folder, "test")
    assert result.metrics["n"] == 12 and all("#" in path for path in result.images.paths)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source-mpp", "lab=0.62"], "give --tile-size and --tile-mpp"),
        (["--tile-size", "160", "--tile-mpp", "1.25", "--source-mpp", "other=0.62"], "not among the --data"),
        (["--tile-size", "160", "--tile-mpp", "1.25", "--source-mpp", "lab"], "NAME=MICRONS_PER_PIXEL"),
        (["--tile-mpp", "1.25"], "give both"),
    ],
)
def test_scales_that_do_not_fit_together_fail_before_training(tmp_path, capsys, args, message):
    folder = _lab_folder(tmp_path / "lab")
    assert cli_main(["train", "--data", str(folder), *args, "--output-dir", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err


def test_a_bad_scale_is_named():
    assert parse_source_mpp(["histopathology_glas=0.62"]) == {"histopathology_glas": 0.62}
    with pytest.raises(DataError, match="bad source scale"):
        parse_source_mpp(["histopathology_glas=-1"])
