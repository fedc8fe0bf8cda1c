"""train.py --streaming on the fixture tiles: the training split read as a stream, split between processes,
decoded as it arrives."""

import json
import shutil

import pytest
from conftest import FIXTURES

from cancer_models import load_pretrained
from cancer_models.cli import main as cli_main
from cancer_models.data.spec import DataSpec
from cancer_models.data.streaming import StreamedImages, load_streamed
from cancer_models.errors import DataError

HISTO = str(FIXTURES / "histopathology")
ARGS = ["--streaming", "--input-size", "48", "--batch-size", "4", "--warmup-epochs", "0.5"]


def test_processes_share_out_the_stream_and_each_epoch_reshuffles_it(tmp_path):
    streamed, held_out = load_streamed(DataSpec([HISTO], cache_dir=str(tmp_path)))
    assert len(streamed) == 12 and streamed.class_counts() == [6, 6] and len(held_out["test"]) == 6

    def epoch(rank: int, number: int) -> list[bytes]:
        shard = StreamedImages(streamed, 32, seed=0, rank=rank, world=2, skip_bad=False, buffer=100)
        shard.set_epoch(number)
        return [image.numpy().tobytes() for image, _ in shard]

    first, second = epoch(0, 0), epoch(1, 0)
    assert len(first) == len(second) == 6 and not set(first) & set(second)  # disjoint halves of all 12
    assert set(epoch(0, 1)) | set(epoch(1, 1)) == set(first) | set(second)
    assert epoch(0, 1) != first  # a new order (and split) each epoch


def test_streamed_training_writes_a_model_and_counts_the_stream(tmp_path, capsys):
    out = tmp_path / "model"
    assert cli_main(["train", "--data", HISTO, "--output-dir", str(out), "--epochs", "2", *ARGS]) == 0
    log = capsys.readouterr().out
    assert "train: 12 images (benign 6, malignant 6; streamed, the first 12 decoded for the rejection check)" in log
    training = load_pretrained(out).config.training
    assert training.splits == {"train": 12, "validation": 6, "test": 6} and training.streamed
    history = (out / "history.csv").read_text().strip().splitlines()
    assert len(history) == 1 + 2
    state = json.loads((out / "checkpoint" / "trainer_state.json").read_text())["state"]
    assert state["step"] == 2 * (12 // 4)  # every epoch reads the whole stream


def test_a_corrupt_image_in_the_stream_stops_the_run_or_is_skipped(tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(HISTO, broken)
    victim = min((broken / "train" / "benign").glob("*.jpg"))
    victim.write_bytes(victim.read_bytes()[:100])
    args = ["--data", str(broken), "--epochs", "1", *ARGS, "--cache-dir", str(tmp_path / "cache")]
    assert cli_main(["train", *args, "--output-dir", str(tmp_path / "stop")]) == 2
    assert victim.name in capsys.readouterr().err
    assert cli_main(["train", *args, "--output-dir", str(tmp_path / "skip"), "--skip-bad-images"]) == 0
    skipped = load_pretrained(tmp_path / "skip").config.training.skipped_images["train"]
    assert len(skipped) == 1 and victim.name in skipped[0]


def test_streaming_needs_validation_and_test_splits(tmp_path):
    only_train = tmp_path / "only_train"
    shutil.copytree(FIXTURES / "histopathology" / "train", only_train / "train")
    with pytest.raises(DataError, match="needs train, validation and test"):
        load_streamed(DataSpec([str(only_train)]))
