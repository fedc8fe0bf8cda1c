import pytest
import torch
from conftest import cache_imagenet_weights
from torch import nn

from cancer_models import CheckpointError, create_model, list_models
from cancer_models.models import CancerCNN, TransferClassifier


def n_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def test_registry_lists_the_required_models():
    assert {"cancer_cnn", "resnet34", "resnet50", "mobilenet_v2", "efficientnet_b0", "vgg16"} <= set(list_models())


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'resnet1000'"):
        create_model("resnet1000")


def test_cancer_cnn_parameter_count():
    model = create_model("cancer_cnn")
    assert isinstance(model, CancerCNN)
    assert n_params(model) == 2_668_027  # the design's "about 2.5 M"; docs/models.md says 2.67 M


def test_cancer_cnn_has_the_designed_stages():
    model = create_model("cancer_cnn")
    kinds = {type(m).__name__ for m in model.modules()}
    assert {
        "ResidualSEBlock",
        "SqueezeExcite",
        "InceptionModule",
        "CBAM",
        "ChannelAttention",
        "SpatialAttention",
    } <= kinds
    assert isinstance(model.global_pool, nn.AdaptiveAvgPool2d)
    assert any(isinstance(m, nn.Dropout) for m in model.head)


def test_resnet34_head_and_parameter_counts():
    model = create_model("resnet34")
    assert isinstance(model, TransferClassifier)
    assert [type(m) for m in model.head] == [nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert (model.head[0].p, model.head[3].p) == (0.5, 0.3)
    assert (model.head[1].in_features, model.head[1].out_features, model.head[4].out_features) == (512, 128, 2)
    # torchvision's resnet34 without its fc layer, plus our head
    assert n_params(model) == 21_284_672 + 65_922


def test_frozen_backbone_trains_only_the_head():
    model = create_model("resnet34", freeze_backbone=True)
    assert n_params(model, trainable_only=True) == 65_922
    model.train()
    # Frozen means frozen BatchNorm statistics too, not only frozen weights.
    assert not any(m.training for m in model.features.modules())
    assert model.head.training
    before = model.features[1].running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert torch.equal(model.features[1].running_mean, before)
    model.set_backbone_frozen(False)
    assert n_params(model, trainable_only=True) == n_params(model)
    assert model.features.training


def test_pretrained_backbone_comes_from_torchvision_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    imagenet = cache_imagenet_weights(tmp_path, "resnet18")
    model = create_model("resnet18", pretrained_backbone=True)
    assert torch.equal(model.features[0].weight, imagenet["conv1.weight"])
    assert torch.equal(model.features[7][1].conv2.weight, imagenet["layer4.1.conv2.weight"])
    assert not torch.equal(create_model("resnet18").features[0].weight, imagenet["conv1.weight"])


def test_missing_imagenet_weights_are_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x80")  # a corrupt cached file is used as is, never re-downloaded
    with pytest.raises(CheckpointError, match=r"ImageNet weights .* for resnet18 .*resnet18-f37072fd\.pth"):
        create_model("resnet18", pretrained_backbone=True)


@pytest.mark.parametrize("name", ["cancer_cnn", "resnet34"])
@pytest.mark.parametrize("size", [96, 224])
def test_forward_shapes(name, size):
    model = create_model(name).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, size, size)).shape == (2, 2)


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2", "efficientnet_b0", "vgg16", "resnet18"])
def test_other_backbones_forward_and_name_cam_layers(name):
    model = create_model(name).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 96, 96)).shape == (1, 2)
    layers = model.cam_target_layers()
    assert layers and all(any(layer is m for m in model.features.modules()) for layer in layers)
    assert model.head[1].out_features == 128


def test_cancer_cnn_accepts_non_square_and_small_inputs():
    model = create_model("cancer_cnn").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 2)
        assert model(torch.randn(1, 3, 64, 130)).shape == (1, 2)


def test_forward_is_features_then_head():
    model = create_model("cancer_cnn").eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape[1] == model.num_features
        assert torch.allclose(model.forward_head(features), model(x))
        assert model.forward_head(features, pre_logits=True).shape == (1, model.num_features)


def test_bad_model_args_are_reported():
    with pytest.raises(ValueError, match="bad model_args"):
        create_model("cancer_cnn", no_such_option=3)


def test_models_declare_their_parameter_groups_and_backbone():
    cnn, resnet = create_model("cancer_cnn"), create_model("resnet18")
    assert not cnn.has_backbone and resnet.has_backbone
    assert [g["name"] for g in resnet.parameter_groups()] == ["backbone", "head"]
    for model in (cnn, resnet):
        grouped = [p for g in model.parameter_groups() for p in g["params"]]
        assert len(grouped) == len({id(p) for p in grouped}) == len(list(model.parameters()))
