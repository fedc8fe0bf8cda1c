import numpy as np
import pytest
import torch
from conftest import fixture_images
from PIL import Image

from cancer_models import Prediction, Predictor
from cancer_models.models.preprocessing import normalize


def test_single_and_batch_prediction_agree(small_cnn):
    images = fixture_images()
    predictor = Predictor(small_cnn, batch_size=4)
    batch = predictor.predict(images)
    assert isinstance(batch, list) and len(batch) == len(images)
    single = predictor.predict(images[2])
    assert isinstance(single, Prediction)
    assert single.malignant_probability == pytest.approx(batch[2].malignant_probability, abs=1e-5)
    for p in batch:
        assert set(p.probabilities) == {"benign", "malignant"}
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert p.label == ("malignant" if p.malignant_probability >= p.threshold else "benign")


def test_an_empty_list_gives_an_empty_list(small_cnn):
    predictor = Predictor(small_cnn, batch_size=4)
    assert predictor.predict([]) == [] and predictor.predict([], tta=True) == []
    assert predictor.probabilities(predictor.preprocess([])).shape == (0, 2)


def test_probabilities_are_temperature_calibrated(small_cnn, histo_image):
    predictor = Predictor(small_cnn)
    x = normalize(predictor.preprocess([histo_image]), small_cnn.config.mean, small_cnn.config.std)
    with torch.no_grad():
        logits = small_cnn(x)[0]
    small_cnn.config.temperature = 3.0
    expected = torch.softmax(logits / 3.0, dim=0)[1].item()
    assert predictor.predict(histo_image).malignant_probability == pytest.approx(expected, abs=1e-6)


def test_threshold_decides_the_label(small_cnn, histo_image):
    predictor = Predictor(small_cnn)
    p = predictor.predict(histo_image).malignant_probability
    small_cnn.config.threshold = (p + 1) / 2
    assert predictor.predict(histo_image).label == "benign"
    small_cnn.config.threshold = p / 2
    assert predictor.predict(histo_image).label == "malignant"


def test_custom_label_names(small_cnn, histo_image):
    small_cnn.config.labels = ("normal", "tumour")
    prediction = Predictor(small_cnn).predict(histo_image)
    assert set(prediction.probabilities) == {"normal", "tumour"} and prediction.label in ("normal", "tumour")


def test_tta_is_invariant_on_a_symmetric_image(small_cnn):
    # Symmetric under all 8 flips/rotations: intensity depends only on distance to the nearest edge.
    n = 96
    d = np.minimum(np.arange(n), np.arange(n)[::-1])
    ring = (np.minimum.outer(d, d) * 7 % 256).astype(np.uint8)
    image = np.stack([ring, 255 - ring, ring // 2], axis=-1)
    predictor = Predictor(small_cnn)
    plain = predictor.predict(image, tta=False).malignant_probability
    assert predictor.predict(image, tta=True).malignant_probability == pytest.approx(plain, abs=1e-5)


def test_tta_averages_the_eight_views(small_cnn, histo_image):
    predictor = Predictor(small_cnn)
    tile = Image.open(histo_image).convert("RGB")
    ops = [None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270]
    views = [tile if op is None else tile.transpose(op) for op in ops]
    views += [v.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for v in views]
    by_hand = np.mean([p.malignant_probability for p in predictor.predict(views)])
    assert predictor.predict(tile, tta=True).malignant_probability == pytest.approx(by_hand, abs=1e-4)
    assert Predictor(small_cnn, tta=True).predict(tile).malignant_probability == pytest.approx(by_hand, abs=1e-4)


def test_predictor_puts_the_model_in_eval_mode(small_cnn, histo_image):
    small_cnn.train()
    predictor = Predictor(small_cnn)
    assert not small_cnn.training
    first = predictor.predict(histo_image).malignant_probability
    assert predictor.predict(histo_image).malignant_probability == first  # no dropout at inference
