import gc
import warnings

import numpy as np
import pytest
import torch
from conftest import fixture_images

from cancer_models import CAM_METHODS, Predictor, create_model

REQUIRED_METHODS = {"gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam", "scorecam"}


def assert_hooks_released(model):
    for m in model.modules():
        assert not m._forward_hooks and not m._backward_hooks, f"hook left on {type(m).__name__}"


def test_all_required_methods_are_offered():
    assert REQUIRED_METHODS <= set(CAM_METHODS)


@pytest.mark.parametrize("method", sorted(REQUIRED_METHODS))
def test_cam_on_the_custom_cnn(small_cnn, histo_image, method):
    explanation = Predictor(small_cnn).explain(histo_image, method=method)
    heatmap = explanation.heatmap
    assert heatmap.shape == explanation.image.size[::-1]
    assert np.isfinite(heatmap).all() and heatmap.min() >= 0 and heatmap.max() <= 1
    assert heatmap.std() > 0.01, "constant map"
    assert explanation.overlay.shape == (*heatmap.shape, 3) and explanation.overlay.dtype == np.uint8
    assert not small_cnn.training
    assert_hooks_released(small_cnn)
    assert all(p.grad is None for p in small_cnn.parameters())


@pytest.mark.parametrize("freeze", [False, True])
def test_gradcam_on_resnet34(histo_image, freeze):
    torch.manual_seed(0)
    model = create_model("resnet34", input_size=96, freeze_backbone=freeze)
    model.train()
    explanation = Predictor(model).explain(histo_image)
    assert np.isfinite(explanation.heatmap).all() and explanation.heatmap.std() > 0.01
    assert not model.training
    assert_hooks_released(model)


def test_explains_the_predicted_class_or_the_asked_one(small_cnn, histo_image):
    predictor = Predictor(small_cnn)
    explanation = predictor.explain(histo_image)
    assert explanation.explained_label == explanation.prediction.label
    other = "benign" if explanation.prediction.label == "malignant" else "malignant"
    flipped = predictor.explain(histo_image, label=other)
    assert flipped.explained_label == other
    assert not np.allclose(flipped.heatmap, explanation.heatmap)


def test_benign_prediction_is_explained_as_benign(small_cnn, histo_image):
    small_cnn.config.threshold = 0.999  # forces a benign call
    explanation = Predictor(small_cnn).explain(histo_image)
    assert explanation.prediction.label == explanation.explained_label == "benign"
    assert explanation.heatmap.std() > 0.01


def test_alpha_controls_the_blend(small_cnn, histo_image):
    predictor = Predictor(small_cnn)
    image = np.asarray(predictor.explain(histo_image, alpha=0.0).image)
    assert np.abs(predictor.explain(histo_image, alpha=0.0).overlay.astype(int) - image).max() <= 1
    assert np.abs(predictor.explain(histo_image, alpha=0.8).overlay.astype(int) - image).mean() > 10


def test_bad_method_and_label(small_cnn, histo_image):
    predictor = Predictor(small_cnn)
    with pytest.raises(ValueError, match="unknown CAM method"):
        predictor.explain(histo_image, method="magic")
    with pytest.raises(ValueError, match="unknown label"):
        predictor.explain(histo_image, label="cancer")


def _live_tensors() -> int:
    gc.collect()
    with warnings.catch_warnings():  # isinstance() touches deprecated torch.distributed attributes
        warnings.simplefilter("ignore")
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


def test_repeated_explanations_do_not_accumulate_state(small_cnn):
    predictor = Predictor(small_cnn)
    images = fixture_images()
    predictor.explain(images[0])
    before = _live_tensors()
    for i in range(40):
        predictor.explain(images[i % len(images)], method="gradcam" if i % 2 else "layercam")
    assert _live_tensors() <= before
    assert_hooks_released(small_cnn)
