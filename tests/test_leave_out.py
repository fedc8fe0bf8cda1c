"""Leave-one-source-out: a collection (a clinic, a lab, a sub-collection) held out of every split is scored as
images the model never saw, recorded and shown in the card next to the pooled test figures; and training that
draws both classes equally often within each collection."""

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import FIXTURES

from cancer_models import DataError, load_pretrained
from cancer_models.cli import main as cli_main
from cancer_models.data.image_sets import load_splits
from cancer_models.data.spec import DataSpec
from cancer_models.evaluation.evaluate import evaluate
from cancer_models.training.trainer import collection_weights

ROOT = FIXTURES.parents[1]
HISTO = str(FIXTURES / "histopathology")
FAST = ["--input-size", "64", "--batch-size", "6", "--warmup-epochs", "0.5", "--augment", "histopathology"]


def _collections(split) -> set[str]:
    return set(split["collection"])


def test_a_left_out_collection_leaves_every_split_for_its_own():
    whole = load_splits(DataSpec([HISTO]))
    colon = {split: sum("colon" in c for c in ds["collection"]) for split, ds in whole.items()}
    splits = load_splits(DataSpec([HISTO], leave_out=["COLON"]))  # a part of the name, in any case
    assert set(splits) == {"train", "validation", "test", "left_out"}
    assert _collections(splits["left_out"]) == {"LC25000 colon (Borkowski et al. 2019)"}
    assert len(splits["left_out"]) == sum(colon.values()) == 10
    for name in ("train", "validation", "test"):
        assert _collections(splits[name]) == {"LC25000 lung (Borkowski et al. 2019)"}
        assert len(splits[name]) == len(whole[name]) - colon[name]
    # Without a collection column, a source is named by its folder.
    assert _collections(load_splits(DataSpec([HISTO], collection_column="clinic"))["test"]) == {"histopathology"}


@pytest.mark.parametrize(
    ("names", "message"),
    [(["Warwick"], "matches no collection"), (["colon", "lung"], "without both classes")],
)
def test_leaving_out_nothing_or_everything_is_refused(names, message):
    with pytest.raises(DataError, match=message):
        load_splits(DataSpec([HISTO], leave_out=names))


def test_training_without_a_collection_scores_it_and_the_card_says_so(tmp_path, capsys):
    out = tmp_path / "without-colon"
    args = ["train", "--data", HISTO, "--leave-out", "colon", "--output-dir", str(out), "--epochs", "1", *FAST]
    assert cli_main(args) == 0, capsys.readouterr().err[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    left = metrics["left_out"]
    assert left["n"] == 10 and left["collections"] == ["LC25000 colon (Borkowski et al. 2019)"]
    assert 0 <= left["auc"] <= 1 and metrics["test"]["n"] == 3  # the lung test tiles only
    model = load_pretrained(out)
    assert model.config.training.settings["leave_out"] == ["colon"]
    assert model.config.training.trust["left_out"]["n"] == 10  # refusals and coverage on the collection too
    card = (out / "README.md").read_text()
    assert "### Collections left out of training (n = 10)" in card and "`LC25000 colon" in card
    assert card.index("### Test split") < card.index("### Collections left out")
    # The table of such runs, stored with a model that ships: its card shows it.
    shipped = tmp_path / "shipped"
    shutil.copytree(out, shipped)
    capsys.readouterr()
    assert cli_main(["sources", str(out), "--record", str(shipped)]) == 0
    printed = capsys.readouterr().out
    assert "| LC25000 colon (Borkowski et al. 2019) | 10 |" in printed
    card = (shipped / "README.md").read_text()
    assert "### Collections left out of training (leave-one-source-out)" in card and printed.strip() in card
    # Evaluation splits the data as the run did: its test split holds no left-out image; left_out scores them.
    test = evaluate(model, HISTO, "test")
    assert test.metrics["n"] == 3 and "without the collections training left out" in test.split_note
    left_out = evaluate(model, HISTO, "left_out")
    assert left_out.metrics["n"] == 10 and left_out.metrics["auc"] == pytest.approx(left["auc"], abs=1e-4)
    with pytest.raises(DataError, match="trained on this data with --leave-out"):
        evaluate(load_pretrained(ROOT / "models" / "histopathology-cancer-cnn"), HISTO, "left_out")


def test_collections_are_reported_apart_and_a_table_needs_runs_that_left_one_out(tmp_path, capsys):
    out = tmp_path / "whole"
    assert cli_main(["train", "--data", HISTO, "--output-dir", str(out), "--epochs", "1", *FAST]) == 0
    # Refusals and coverage are reported for each collection of the test split, not only for the mix.
    test = load_pretrained(out).config.training.trust["test"]
    per = test["per_collection"]
    assert set(per) == {"LC25000 colon (Borkowski et al. 2019)", "LC25000 lung (Borkowski et al. 2019)"}
    assert sum(c["n"] for c in per.values()) == test["n"] and all("coverage" in c for c in per.values())
    assert "Per collection of the test split: LC25000 colon" in (out / "README.md").read_text()
    capsys.readouterr()
    assert cli_main(["sources", str(out)]) == 2
    assert "not trained with --leave-out" in capsys.readouterr().err


def test_balanced_sampling_draws_both_classes_equally_often_within_each_collection():
    # A referral clinic where a third of the images are cancers, a screening practice with 2 cancers in 600.
    collections = ["referral"] * 300 + ["screening"] * 600
    targets = torch.tensor([1] * 100 + [0] * 200 + [1] * 2 + [0] * 598)
    weights = collection_weights(collections, targets)
    drawn = torch.multinomial(weights, 30_000, replacement=True, generator=torch.Generator().manual_seed(0)).tolist()
    referral = [i for i in drawn if collections[i] == "referral"]
    assert len(referral) / len(drawn) == pytest.approx(1 / 3, abs=0.02)  # each collection keeps its share
    assert np.mean([targets[i] == 1 for i in referral]) == pytest.approx(0.5, abs=0.02)  # both classes alike
    screening = [i for i in drawn if collections[i] == "screening"]
    assert np.mean([targets[i] == 1 for i in screening]) == pytest.approx(2 / 600, abs=0.003)  # 2 cancers: as is


def test_training_with_balanced_collections_says_so_in_its_recipe(tmp_path, capsys):
    out = tmp_path / "balanced"
    args = ["train", "--data", HISTO, "--balance-collections", "--output-dir", str(out), "--epochs", "1", *FAST]
    assert cli_main(args) == 0, capsys.readouterr().err[-2000:]
    assert "both classes drawn equally often within each collection" in load_pretrained(out).config.training.recipe


def _by_collection(tmp_path, word: str, labs: tuple[str, ...] = ()):
    """The fixture's images of the collections named with ``word`` alone, as a folder of their own; with ``labs``,
    their images dealt out to collections of those names in turn within each class."""
    out, dealt = tmp_path / word, {}
    for split in ("train", "validation", "test"):
        rows = (FIXTURES / "histopathology" / split / "metadata.csv").read_text().splitlines()
        kept = [rows[0], *(r for r in rows[1:] if word in r.split(",")[-1])]
        for i, row in enumerate(kept[1:], start=1):
            name, label, *_ = row.split(",")
            (out / split / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(FIXTURES / "histopathology" / split / name, out / split / name)
            if labs:
                dealt[label] = dealt.get(label, -1) + 1
                kept[i] = ",".join([*row.split(",")[:-1], labs[dealt[label] % len(labs)]])
        (out / split / "metadata.csv").write_text("\n".join(kept) + "\n")
    return str(out)


def test_a_source_that_training_left_out_whole_is_scored_per_collection_not_as_a_test_split(tmp_path, capsys):
    lung, colon = _by_collection(tmp_path, "lung"), _by_collection(tmp_path, "colon", ("colon lab A", "colon lab B"))
    out = tmp_path / "run"
    args = ["train", "--data", lung, colon, "--leave-out", "colon", "--output-dir", str(out), "--epochs", "1", *FAST]
    assert cli_main(args) == 0, capsys.readouterr().err[-2000:]
    model = load_pretrained(out)
    with pytest.raises(DataError, match="holds only collections training left out .*--split left_out"):
        evaluate(model, colon, "test")
    assert evaluate(model, colon, "left_out").metrics["n"] == 10
    # Two collections left out: the table gives each apart under the run's row (6 and 4 tiles).
    left = model.config.training.metrics["left_out"]
    assert set(left["per_collection"]) == {"colon lab A", "colon lab B"}
    capsys.readouterr()
    assert cli_main(["sources", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| colon lab A, colon lab B | 10 |" in printed
    assert "| of which colon lab A | 6 |" in printed and "| of which colon lab B | 4 |" in printed
