import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FIXTURES, fixture_images, train_only_folder
from datasets import ClassLabel, Dataset, Features, Value
from datasets import Image as ImageFeature
from PIL import Image

from cancer_models.data.decoding import decode_split
from cancer_models.data.image_sets import group_split, load_raw, load_splits
from cancer_models.data.spec import DataSpec, parse_label_map
from cancer_models.errors import DataError

HISTO = FIXTURES / "histopathology"


def test_imagefolder_with_metadata_reads_the_label_column():
    splits = load_splits(DataSpec([str(HISTO)]))
    assert {k: len(v) for k, v in splits.items()} == {"train": 12, "validation": 6, "test": 6}
    assert splits["train"].column_names == ["image", "target", "group", "source", "collection", "subtype", "mask"]
    with open(HISTO / "train" / "metadata.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(splits["train"]["target"]) == sorted(int(r["label"] == "malignant") for r in rows)
    decoded = decode_split(splits["train"], 32)
    counts = {}
    for r in rows:
        counts.setdefault(r["subtype"], [0, 0])[int(r["label"] == "malignant")] += 1
    assert decoded.subtype_counts() == dict(sorted(counts.items()))


def test_label_map_over_another_column():
    mapping = parse_label_map("colon_n=benign,lung_n=benign,colon_aca=malignant,lung_aca=malignant,lung_scc=malignant")
    splits = load_splits(DataSpec([str(HISTO)], label_column="subtype", label_map=mapping))
    assert sorted(splits["test"]["target"]) == [0, 0, 0, 1, 1, 1]


def test_bad_label_map_entries():
    with pytest.raises(DataError, match="RAW=benign"):
        parse_label_map("lung_n=healthy")


def test_missing_splits_are_made_without_cutting_groups(tmp_path):
    root = train_only_folder(tmp_path / "flat")
    splits = load_splits(DataSpec([str(root)], validation_fraction=0.2, test_fraction=0.2))
    groups = {name: set(ds["group"]) for name, ds in splits.items()}
    assert sum(len(ds) for ds in splits.values()) == 54
    assert all(len(ds) % 3 == 0 for ds in splits.values()), "a group of 3 copies was cut"
    assert not (groups["train"] & groups["validation"]) and not (groups["train"] & groups["test"])
    assert not (groups["validation"] & groups["test"])
    for ds in splits.values():  # stratified: both classes everywhere
        assert set(ds["target"]) == {0, 1}


def test_folder_labels_without_metadata(tmp_path):
    root = train_only_folder(tmp_path / "flat", with_groups=False)
    splits = load_splits(DataSpec([str(root)]))
    assert sum(sum(ds["target"]) for ds in splits.values()) == 27  # 9 malignant tiles x 3 copies


@pytest.mark.parametrize("seed", range(5))
def test_group_split_never_cuts_a_group(seed):
    rng = np.random.default_rng(seed)
    groups = [f"g{g}" for g in rng.integers(0, 60, 400)]
    targets = [int(g[1:]) % 3 == 0 for g in groups]  # label is a property of the group, as in real data
    keep, take = group_split(targets, groups, 0.2, seed)
    assert len(keep) + len(take) == 400
    assert not {groups[i] for i in keep} & {groups[i] for i in take}
    assert 0.1 < len(take) / 400 < 0.3


def test_several_sources_are_combined(tmp_path):
    second = tmp_path / "second"
    shutil.copytree(HISTO, second)
    splits = load_splits(DataSpec([str(HISTO), str(second)]))
    assert len(splits["train"]) == 24
    assert set(splits["train"]["source"]) == {str(HISTO), str(second)}
    # the same group name in two sources is two different groups
    assert len(set(splits["train"]["group"])) == 2 * len(set(load_splits(DataSpec([str(HISTO)]))["train"]["group"]))


def _as_hub_parquet(root: Path, names: tuple[str, str]) -> Path:
    """The histopathology fixtures as a Hub image dataset downloaded to ``root``: one parquet file per
    split under data/, image bytes embedded, labels a ClassLabel with ``names`` (benign first)."""
    (root / "data").mkdir(parents=True)
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=list(names)), "group": Value("string")})
    for split in ("train", "validation", "test"):
        with open(HISTO / split / "metadata.csv") as f:
            rows = list(csv.DictReader(f))
        columns = {
            "image": [{"bytes": (HISTO / split / r["file_name"]).read_bytes(), "path": None} for r in rows],
            "label": [int(r["label"] == "malignant") for r in rows],
            "group": [r["group"] for r in rows],
        }
        Dataset.from_dict(columns, features=features).to_parquet(root / "data" / f"{split}-00000-of-00001.parquet")
    return root


@pytest.mark.parametrize("names", [("benign", "malignant"), ("no_tumour", "tumour")])
def test_a_downloaded_hub_dataset_loads_like_the_imagefolder(tmp_path, names):
    root = _as_hub_parquet(tmp_path / "download", names)
    label_map = {} if names == ("benign", "malignant") else {"no_tumour": "benign", "tumour": "malignant"}
    from_parquet = load_splits(DataSpec([str(root)], label_map=label_map))
    from_folder = load_splits(DataSpec([str(HISTO)]))
    for split in ("train", "validation", "test"):
        a, b = from_parquet[split], from_folder[split]
        assert a.column_names == b.column_names
        assert sorted(a["target"]) == sorted(b["target"])
        assert {g.split(":", 1)[1] for g in a["group"]} == {g.split(":", 1)[1] for g in b["group"]}
    # The same pixels, whether decoded from embedded bytes or from files.
    pixels = [
        sorted(t.numpy().tobytes() for t in decode_split(d["test"], 32).images) for d in (from_parquet, from_folder)
    ]
    assert pixels[0] == pixels[1]
    if label_map:
        with pytest.raises(DataError, match="neither benign/malignant"):
            load_splits(DataSpec([str(root)]))


def test_clear_errors_for_bad_paths_and_columns(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_splits(DataSpec([str(tmp_path / "nowhere")]))
    with pytest.raises(DataError, match="no label column 'diagnosis'.*columns are"):
        load_splits(DataSpec([str(HISTO)], label_column="diagnosis"))
    with pytest.raises(DataError, match="no image column 'img'"):
        load_splits(DataSpec([str(HISTO)], image_column="img"))
    with pytest.raises(DataError, match="neither benign/malignant nor in the label map"):
        load_splits(DataSpec([str(HISTO)], label_column="subtype"))
    with pytest.raises(DataError, match="no train split"):
        load_splits(DataSpec([str(FIXTURES / "dermoscopy")]))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match="has no image files in imagefolder layout"):
        load_splits(DataSpec([str(tmp_path / "notes")]))
    (tmp_path / "notes" / "train.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="cannot load dataset"):
        load_splits(DataSpec([str(tmp_path / "notes")]))


def test_decoding_matches_the_predictor_and_reports_corrupt_files(tmp_path, small_cnn):
    from cancer_models import Predictor

    splits = load_splits(DataSpec([str(HISTO)]))
    decoded = decode_split(splits["test"], 96)
    assert decoded.images.shape == (6, 3, 96, 96) and decoded.class_counts() == [3, 3]
    # Training sees exactly the pixels the Predictor will see at inference.
    first_path = splits["test"].cast_column("image", ImageFeature(decode=False))[0]["image"]["path"]
    assert torch.equal(Predictor(small_cnn).preprocess([first_path])[0], decoded.images[0])

    broken = tmp_path / "broken"
    shutil.copytree(HISTO, broken)
    victim = next((broken / "test" / "benign").glob("*.jpg"))
    victim.write_bytes(victim.read_bytes()[:200])
    with pytest.raises(DataError, match=victim.name):
        decode_split(load_splits(DataSpec([str(broken)]))["test"], 64)
    kept = decode_split(load_splits(DataSpec([str(broken)]))["test"], 64, skip_bad=True)
    assert len(kept) == 5 and kept.images.shape[0] == 5 and len(kept.groups) == 5 and kept.class_counts() == [2, 3]
    assert len(kept.skipped) == 1 and victim.name in kept.skipped[0]
    full = decode_split(splits["test"], 64)
    paths = [item["path"] for item in splits["test"].cast_column("image", ImageFeature(decode=False))["image"]]
    bad = next(i for i, p in enumerate(paths) if Path(p).name == victim.name)
    assert torch.equal(kept.images, full.images[[i for i in range(6) if i != bad]])  # the intact ones, in order


def test_words_in_file_names_are_never_split_names(tmp_path):
    """GlaS keeps names like train_12.bmp and testA_5.bmp: every image of a flat folder loads as one set."""
    names = ["train_1.jpg", "testA_1.jpg", "valid.png", "test_2.jpg", "validation_3.jpg", "train_9.bmp"]
    tiles = fixture_images("histopathology", "train")
    for i, name in enumerate(names):
        label = "benign" if i % 2 else "malignant"
        (tmp_path / "flat" / label).mkdir(parents=True, exist_ok=True)
        Image.open(tiles[i]).save(tmp_path / "flat" / label / name)
    raw = load_raw(str(tmp_path / "flat"))
    assert list(raw) == ["train"] and len(raw["train"]) == len(names)


def test_an_image_left_out_of_the_metadata_fails_the_load(tmp_path):
    root = train_only_folder(tmp_path / "flat")
    extra = root / "train" / "benign" / "not_listed.png"
    shutil.copy(next((root / "train" / "benign").glob("*.png")), extra)
    with pytest.raises(DataError, match=r"image files but .* loaded"):
        load_raw(str(root))


def test_images_outside_the_split_folders_are_named(tmp_path):
    shutil.copytree(HISTO, tmp_path / "set")
    (tmp_path / "set" / "extra").mkdir()
    shutil.copy(fixture_images()[0], tmp_path / "set" / "extra" / "tile.jpg")
    with pytest.raises(DataError, match="extra"):
        load_raw(str(tmp_path / "set"))
