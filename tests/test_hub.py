import json

import pytest
import torch
from conftest import lay_out_as_hub_cache
from safetensors.torch import save_file

from cancer_models import CheckpointError, ConfigError, Predictor, create_model, load_pretrained
from cancer_models.models import CancerCNN, TransferClassifier
from cancer_models.record import TrainingRecord
from cancer_models.reporting.model_folder import save_model_folder


@pytest.fixture
def saved_cnn(tmp_path, small_cnn):
    small_cnn.config.threshold = 0.42
    small_cnn.config.temperature = 1.7
    small_cnn.config.training = TrainingRecord(task="histopathology", epochs_run=3)
    save_model_folder(small_cnn, tmp_path / "cnn")
    return small_cnn, tmp_path / "cnn"


def test_save_writes_the_hub_folder(saved_cnn):
    model, folder = saved_cnn
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "cancer_cnn"
    assert config["labels"] == ["benign", "malignant"]
    assert config["input_size"] == 96
    assert config["threshold"] == 0.42 and config["temperature"] == 1.7
    assert config["training"]["task"] == "histopathology" and config["training"]["epochs_run"] == 3
    assert config["training"]["schema_version"] == 2
    assert len(config["mean"]) == len(config["std"]) == 3
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n") and "not a medical device" in card and "library_name: cancer-models" in card

    model.config.training.task = "renamed"  # saving again replaces the card, never keeps a stale one
    save_model_folder(model, folder)
    assert "for renamed" in (folder / "README.md").read_text()


def test_the_model_alone_saves_weights_and_config_and_never_publishes_without_its_card(tmp_path):
    model = create_model("cancer_cnn", input_size=64)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    with pytest.raises(CheckpointError, match="cancer-models push"):
        model.push_to_hub("someone/model")
    with pytest.raises(CheckpointError, match="cancer-models push"):
        model.save_pretrained(tmp_path, push_to_hub=True)
    with pytest.raises(CheckpointError, match="build_model_card"):  # the mixin's generic card has no figures
        model.generate_model_card()


def test_a_model_built_directly_has_a_config_and_saves(tmp_path):
    model = CancerCNN()
    assert model.config.architecture == "cancer_cnn" and model.config.input_size == 224
    model.save_pretrained(tmp_path)
    assert isinstance(load_pretrained(tmp_path), CancerCNN)
    assert TransferClassifier().config.architecture == "resnet34"


def test_round_trip_gives_identical_outputs(saved_cnn):
    model, folder = saved_cnn
    loaded = load_pretrained(folder)
    assert isinstance(loaded, CancerCNN) and not loaded.training
    assert loaded.config == model.config
    x = torch.randn(3, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_round_trip_transfer_model_keeps_options(tmp_path):
    model = create_model("resnet34", freeze_backbone=True, input_size=64).eval()
    model.save_pretrained(tmp_path)
    loaded = TransferClassifier.from_pretrained(tmp_path)
    assert loaded.backbone_frozen and loaded.config.model_args == {"freeze_backbone": True}
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_from_pretrained_checks_the_class(saved_cnn):
    with pytest.raises(TypeError, match="not a TransferClassifier"):
        TransferClassifier.from_pretrained(saved_cnn[1])


def test_missing_weights_and_pickle_only_folders_are_refused(saved_cnn, tmp_path):
    _, folder = saved_cnn
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="has no model.safetensors.*pickle"):
        load_pretrained(folder)


def test_missing_folder_and_missing_config(tmp_path):
    with pytest.raises(CheckpointError, match="not a model folder"):
        load_pretrained(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="has no config.json"):
        load_pretrained(tmp_path)


def test_mismatched_weights_name_the_problem(tmp_path):
    create_model("resnet34", input_size=64).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["architecture"] = "cancer_cnn"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not fit architecture 'cancer_cnn'.*missing.*unexpected"):
        load_pretrained(tmp_path)


def test_wrong_shapes_are_reported(saved_cnn):
    model, folder = saved_cnn
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["head.1.weight"] = torch.zeros(10, 240)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"wrong shape.*head\.1\.weight"):
        load_pretrained(folder)


def test_corrupt_weights_file(saved_cnn):
    _, folder = saved_cnn
    (folder / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_pretrained(folder)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"architecture": "alexnet"}, "unknown model 'alexnet'"),
        ({"threshold": 1.5}, "'threshold'"),
        ({"temperature": 0}, "'temperature'"),
        ({"labels": ["benign"]}, "'labels'"),
        ({"input_size": "big"}, "'input_size'"),
        ({"std": [0.2, 0.0, 0.2]}, "'std'"),
        ({"format_version": 99}, "upgrade cancer_models"),
        ({"model_args": {"widths": 3}}, "bad model_args"),
        ({"cam_method": "saliency"}, "'cam_method'"),
        ({"cam_layers": "stage3"}, "'cam_layers'"),
        ({"cam_layers": ["stage9"]}, "'cam_layers' names a layer"),
    ],
)
def test_invalid_config_is_refused(saved_cnn, change, message):
    _, folder = saved_cnn
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ConfigError, match=message):
        load_pretrained(folder)


def test_config_that_is_not_ours(saved_cnn):
    _, folder = saved_cnn
    (folder / "config.json").write_text(json.dumps({"model_type": "vit", "hidden_size": 768}))
    with pytest.raises(ConfigError, match="no 'architecture' field"):
        load_pretrained(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_pretrained(folder)


def test_load_from_hub_cache_offline(saved_cnn, tmp_path, histo_image, monkeypatch):
    model, folder = saved_cnn
    cache = tmp_path / "hf-cache"
    lay_out_as_hub_cache(cache, "cancer-models/test-cnn", folder)
    # What HF_HUB_OFFLINE=1 and HF_HUB_CACHE set when huggingface_hub is imported.
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    loaded = load_pretrained("cancer-models/test-cnn")
    assert Predictor(loaded).predict(histo_image).malignant_probability == pytest.approx(
        Predictor(model).predict(histo_image).malignant_probability, abs=1e-6
    )
    with pytest.raises(CheckpointError, match="not in the Hugging Face cache"):
        load_pretrained("cancer-models/not-downloaded")
