"""Decoding through datasets' cache on the fixture tiles: written once, reused, re-made when the size changes,
read from disk batch by batch, and a corrupt file reported or skipped."""

import shutil

import pytest
import torch
from conftest import FIXTURES

from cancer_models.cli import main as cli_main
from cancer_models.data import decoding
from cancer_models.data.decoding import ArrowImages, decode_split
from cancer_models.data.image_sets import load_splits
from cancer_models.data.spec import DataSpec
from cancer_models.errors import DataError
from cancer_models.inference.predict import Predictor
from cancer_models.models import create_model

HISTO = str(FIXTURES / "histopathology")


def train_split(cache, source: str = HISTO):
    return load_splits(DataSpec([source], cache_dir=str(cache)))["train"]


def test_second_decode_reuses_the_cache_and_a_new_size_decodes_again(tmp_path):
    first = decode_split(train_split(tmp_path), 64)
    again = decode_split(train_split(tmp_path), 64)
    other_size = decode_split(train_split(tmp_path), 48)
    assert not first.cache_hit and again.cache_hit and not other_size.cache_hit
    assert torch.equal(first.images, again.images) and other_size.images.shape == (12, 3, 48, 48)
    assert decode_split(train_split(tmp_path), 48).cache_hit


def test_images_read_from_disk_are_the_images_decoded_into_memory(tmp_path):
    in_memory = decode_split(train_split(tmp_path), 64, in_memory=True)
    on_disk = decode_split(train_split(tmp_path), 64, in_memory=False)
    assert isinstance(on_disk.images, ArrowImages) and not on_disk.in_memory and len(on_disk.images) == 12
    assert torch.equal(on_disk.images[[5, 0, 11]], in_memory.images[[5, 0, 11]])  # in the order asked
    assert torch.equal(on_disk.images[2:7], in_memory.images[2:7]) and on_disk.images[3].shape == (3, 64, 64)
    sample = on_disk.subset([4, 1])  # a sample of a disk-backed split stays on disk
    assert not sample.in_memory and torch.equal(sample.images[:], in_memory.images[[4, 1]])
    assert torch.equal(sample.images[[1]], in_memory.images[[1]]) and sample.groups == [
        on_disk.groups[i] for i in (4, 1)
    ]
    assert on_disk.images[[]].shape == (0, 3, 64, 64)
    assert decode_split(train_split(tmp_path), 64, in_memory=None).in_memory  # small: chosen for RAM


def test_test_time_views_of_a_split_read_from_disk_match_those_in_memory(tmp_path):
    """The Predictor takes a disk-backed split's images a batch at a time, views included."""
    in_memory = decode_split(train_split(tmp_path), 64, in_memory=True)
    on_disk = decode_split(train_split(tmp_path), 64, in_memory=False)
    torch.manual_seed(0)
    predictor = Predictor(create_model("cancer_cnn", input_size=64), batch_size=5)  # batches cut the split
    from_disk = predictor.probabilities(on_disk.subset([3, 0, 9, 7, 1, 11]).images, tta=True)
    assert torch.allclose(from_disk, predictor.probabilities(in_memory.images[[3, 0, 9, 7, 1, 11]], tta=True))
    assert not torch.allclose(from_disk, predictor.probabilities(in_memory.images[[3, 0, 9, 7, 1, 11]], tta=False))


def test_parallel_decoding_gives_the_same_pixels(tmp_path, monkeypatch):
    serial = decode_split(train_split(tmp_path / "a"), 64, num_proc=1)
    monkeypatch.setattr(decoding, "PARALLEL_FROM", 1)  # the fixtures are far below the real cut-off
    parallel = decode_split(train_split(tmp_path / "b"), 64, num_proc=2)
    assert torch.equal(serial.images, parallel.images) and serial.groups == parallel.groups


def test_a_corrupt_file_in_a_cached_set_is_named_or_skipped(tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(HISTO, broken)
    victim = min((broken / "train" / "malignant").glob("*.jpg"))
    victim.write_bytes(b"")
    with pytest.raises(DataError, match=victim.name):
        decode_split(train_split(tmp_path / "cache", str(broken)), 64, in_memory=False)
    kept = decode_split(train_split(tmp_path / "cache", str(broken)), 64, skip_bad=True, in_memory=False)
    assert kept.cache_hit  # the decode errors were cached with the images
    assert len(kept) == 11 == len(kept.images) and kept.class_counts() == [6, 5] and victim.name in kept.skipped[0]
    assert kept.images[:].shape == (11, 3, 64, 64) and bool(kept.images[:].flatten(1).amax(dim=1).gt(0).all())


def test_training_from_the_disk_cache_then_again_from_the_same_cache(tmp_path, capsys):
    args = ["--data", HISTO, "--input-size", "64", "--batch-size", "6", "--max-steps", "2", "--epochs", "1"]
    args += ["--decoded-images", "disk", "--cache-dir", str(tmp_path / "cache")]
    assert cli_main(["train", *args, "--output-dir", str(tmp_path / "one")]) == 0
    first = capsys.readouterr().out
    assert "train: 12 images (benign 6, malignant 6; read from the memory-mapped cache)" in first
    assert cli_main(["train", *args, "--output-dir", str(tmp_path / "two")]) == 0
    assert "read from the memory-mapped cache, decoded by an earlier run)" in capsys.readouterr().out
