from __future__ import annotations

import copy
import csv
import hashlib
import os
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

from cancer_models import Predictor, create_model
from cancer_models.calibration import fitting
from cancer_models.models.preprocessing import model_input

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

torch.set_num_threads(2)

# The domain score's negatives at the product's count (about 1,800 images), for tests that check what it learns.
FULL_NEGATIVES = dict(fitting.NEGATIVE_COUNTS)


@pytest.fixture(scope="session", autouse=True)
def _few_negatives():
    """Every fit in this process (training's finish, calibrate) learns its domain score from 245 drawn negatives
    instead of about 1,800: tests check what the fits do, not the shipped figures (which the tests that need
    them restore with FULL_NEGATIVES)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fitting, "NEGATIVE_COUNTS", {"per_scene": 1, "crops": 30, "per_kind": 5})
        yield


def fixture_images(task: str = "histopathology", split: str = "test") -> list[Path]:
    return sorted((FIXTURES / task / split).glob("*/*.jpg"))


def train_only_folder(root: Path, with_groups: bool = True) -> Path:
    """A folder with a train/ split only: the fixture tiles, each copied 3 times (rotated) as a group of
    near-copies, with the groups in a metadata.csv unless ``with_groups`` is False."""
    rows = []
    for i, src in enumerate(fixture_images("histopathology", "train") + fixture_images("histopathology", "test")):
        label = src.parent.name
        (root / "train" / label).mkdir(parents=True, exist_ok=True)
        for turn in range(3):
            name = f"{label}/img{i}_{turn}.png"
            Image.open(src).rotate(90 * turn).save(root / "train" / name)
            rows.append({"file_name": name, "label": label, "group": f"g{i}"})
    if with_groups:
        with open(root / "train" / "metadata.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["file_name", "label", "group"])
            writer.writeheader()
            writer.writerows(rows)
    return root


@pytest.fixture(scope="session")
def histo_image() -> Path:
    return fixture_images()[0]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present (the data sets are kept outside the repository)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def _briefly_trained_cnn():
    """A cancer_cnn fitted for a few seconds to the fixture tiles.

    Gradient-based CAMs of a randomly initialised network are often all zero (every channel weighs
    negatively), so explanation tests need a model that has learned something.
    """
    torch.manual_seed(0)
    model = create_model("cancer_cnn", input_size=96)
    images = fixture_images("histopathology", "train") + fixture_images("histopathology", "validation")
    x = model_input(Predictor(model).preprocess(images), model.config)
    y = torch.tensor([int(p.parent.name == "malignant") for p in images])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for step in range(40):
        batch = torch.flip(x, dims=(3,)) if step % 2 else x
        loss = torch.nn.functional.cross_entropy(model(batch), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture
def small_cnn(_briefly_trained_cnn):
    """A fresh copy per test, so tests may change its config freely."""
    return copy.deepcopy(_briefly_trained_cnn)


def lay_out_as_hub_cache(cache: Path, repo_id: str, folder: Path, commit: str = "a" * 40) -> None:
    """Write ``folder`` into ``cache`` the way huggingface_hub stores a downloaded snapshot."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for f in folder.iterdir():
        blob = repo / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        blob.write_bytes(f.read_bytes())
        (snapshot / f.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def cache_imagenet_weights(torch_home: Path, name: str = "resnet18", seed: int = 0) -> dict[str, torch.Tensor]:
    """Put stand-in "ImageNet" weights (a seeded random torchvision model) where torchvision's download
    would have left the real ones under ``torch_home``; returns them. The real file needs network."""
    torch.manual_seed(seed)
    state = torchvision.models.get_model(name).state_dict()
    weights = torchvision.models.get_model_weights(name).DEFAULT
    target = torch_home / "hub" / "checkpoints" / Path(weights.url).name
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, target)
    return state
