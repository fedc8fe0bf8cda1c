"""Answers to trust: out-of-distribution rejection, conformal prediction sets, and the decision they make."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FIXTURES, fixture_images
from PIL import Image, ImageDraw

from cancer_models import CheckpointError, ConfigError, Prediction, Predictor, load_pretrained
from cancer_models.calibration import fitting
from cancer_models.cli import main as cli_main
from cancer_models.data.images import to_uint8_tensor
from cancer_models.evaluation.localization import CANDIDATE_METHODS
from cancer_models.models.preprocessing import normalize
from cancer_models.reporting.model_folder import save_model_folder
from cancer_models.settings import TrustSettings
from cancer_models.trust.conformal import (
    ALPHAS,
    CONFIDENT,
    calibrated_collections,
    choose_alpha,
    conformal_quantile,
    coverage,
    prediction_set,
    set_membership,
)
from cancer_models.trust.features import image_statistics
from cancer_models.trust.floors import colour_ratio, fit_colour_floor, texture_ratio

ROOT = Path(__file__).resolve().parents[1]
HISTO_MODEL = ROOT / "models" / "histopathology-cancer-cnn"


def drawings() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (160, 160, 3), dtype=np.uint8))
    flat = Image.new("RGB", (160, 160), (200, 120, 160))  # an H&E-like pink, but no tissue
    text = Image.new("RGB", (160, 160), "white")
    ImageDraw.Draw(text).multiline_text((5, 5), "\n".join(["benign or malignant?"] * 8), fill="black")
    return [noise, flat, text]


def test_the_histopathology_model_refuses_other_modalities_and_drawings():
    predictor = Predictor(load_pretrained(HISTO_MODEL))
    tiles = predictor.predict(fixture_images("histopathology", "test"))
    assert all(p.in_distribution and p.decision in ("benign", "malignant", "uncertain") for p in tiles)
    others = [*fixture_images("dermoscopy", "test"), *fixture_images("ultrasound", "test"),
              *fixture_images("mammography", "test")]  # fmt: skip
    for p in predictor.predict([*others, *drawings()]):
        assert not p.in_distribution and p.decision == "not recognised" and p.prediction_set == ()
        assert p.ood_score > 1  # a multiple of its limit


@pytest.mark.parametrize("modality", ["dermoscopy", "ultrasound"])
def test_the_other_shipped_models_refuse_the_other_modalities_too(modality):
    predictor = Predictor(load_pretrained(ROOT / "models" / f"{modality}-cancer-cnn"))
    others = [m for m in ("histopathology", "dermoscopy", "ultrasound", "mammography") if m != modality]
    images = [image for m in others for split in ("train", "validation", "test") for image in fixture_images(m, split)]
    assert len(images) >= 20
    assert not any(p.in_distribution for p in predictor.predict([*images, *drawings()]))


def test_sets_cover_one_minus_alpha_and_never_contradict_the_probability():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4000, 1))
    p_malignant = 1 / (1 + np.exp(-logits[:, 0]))
    targets = (rng.random(4000) < p_malignant).astype(int)  # calibrated by construction
    probs = np.stack([1 - p_malignant, p_malignant], axis=1)
    alpha, qhat = choose_alpha(probs[:2000], targets[:2000], threshold=0.5)
    assert alpha == 0.1  # about 80% right: 90% sets need both classes sometimes, so the first level is kept
    result = coverage(probs[2000:], targets[2000:], 0.5, qhat)
    assert result["coverage"] == pytest.approx(0.9, abs=0.02)
    assert result["singleton"] + result["both"] == pytest.approx(1.0)
    sets = set_membership(probs[2000:], 0.5, qhat)
    assert sets.any(axis=1).all()  # never empty
    assert sets[np.arange(2000), probs[2000:].argmax(axis=1)].all()  # always the most probable class
    assert not sets[probs[2000:].max(axis=1) >= 0.95].all(axis=1).any()  # confident answers are never uncertain
    assert prediction_set([0.97, 0.03], ("benign", "malignant"), 0.5, qhat) == ("benign",)
    assert prediction_set([0.5, 0.5], ("benign", "malignant"), 0.5, 0.6) == ("benign", "malignant")
    # The threshold decides malignant although benign is more probable: both stay plausible.
    assert prediction_set([0.7, 0.3], ("benign", "malignant"), 0.1, 0.01) == ("benign", "malignant")


def test_sets_hold_on_each_collection_not_only_on_the_mix():
    """A large easy collection and a smaller hard one: one quantile over the mix falls short on the hard one."""
    rng = np.random.default_rng(2)
    names = np.array(["easy"] * 3000 + ["hard"] * 600)
    spread = np.where(names == "easy", 4.0, 1.0)  # the hard collection's probabilities sit nearer 0.5
    p_malignant = 1 / (1 + np.exp(-rng.normal(0, 1, 3600) * spread))
    targets = (rng.random(3600) < p_malignant).astype(int)
    probs = np.stack([1 - p_malignant, p_malignant], axis=1)
    calibration, test = np.arange(0, 3600, 2), np.arange(1, 3600, 2)
    p_true = probs[calibration, targets[calibration]]
    pooled = conformal_quantile(p_true, 0.1)
    per_collection = conformal_quantile(p_true, 0.1, names[calibration].tolist())
    hard = test[names[test] == "hard"]
    assert coverage(probs[hard], targets[hard], 0.5, pooled)["coverage"] < 0.85
    assert per_collection > pooled
    for name in ("easy", "hard"):
        part = test[names[test] == name]
        assert coverage(probs[part], targets[part], 0.5, per_collection)["coverage"] >= 0.88, name
    # The level is judged where the sets are tightest: the easy collection's extra coverage does not push the
    # model to a higher level, where the hard collection's quantile would put both classes in nearly every set.
    alpha, qhat = choose_alpha(probs[calibration], targets[calibration], 0.5, names[calibration].tolist())
    assert (alpha, qhat) == (0.1, per_collection)
    # a collection too small for the level counts in the mix alone (no quantile of 1: both classes everywhere)
    names_with_tiny = ["x"] * (len(p_true) - 10) + ["tiny"] * 10
    assert conformal_quantile(p_true, 0.02, names_with_tiny) < 1
    assert calibrated_collections(names_with_tiny, 0.02) == ["x"] and calibrated_collections(names_with_tiny, 0.1) == [
        "tiny",
        "x",
    ]


def test_an_accurate_model_gets_a_higher_level_not_empty_sets():
    """Right 99.5% of the time: at 90%, LAC would give empty sets; the chosen level keeps coverage near nominal."""
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 2, 6000)
    confident = np.where(rng.random(6000) < 0.995, rng.uniform(0.97, 1.0, 6000), rng.uniform(0.0, 0.4, 6000))
    p_malignant = np.where(targets == 1, confident, 1 - confident)
    probs = np.stack([1 - p_malignant, p_malignant], axis=1)
    alpha, qhat = choose_alpha(probs[:3000], targets[:3000], threshold=0.5)
    assert alpha <= 0.02
    result = coverage(probs[3000:], targets[3000:], 0.5, qhat)
    assert abs(result["coverage"] - (1 - alpha)) <= 0.03
    assert result["both"] < 0.02


def test_a_few_confident_mistakes_do_not_make_confident_answers_uncertain():
    """Another lab's tiles: right 98% of the time, wrong the rest with high confidence. Its 98% quantile would put
    the other class beside every answer up to 97% probable; the level stops at 95%, which its sets meet."""
    rng = np.random.default_rng(3)
    names = np.array(["lab a"] * 3000 + ["lab b"] * 300)
    right = np.ones(3300, bool)
    right[3000:3006] = False  # 6 confident mistakes in lab b
    p_true = np.where(right, rng.uniform(0.97, 1.0, 3300), rng.uniform(0.0, 0.03, 3300))
    targets = rng.integers(0, 2, 3300)
    p_malignant = np.where(targets == 1, p_true, 1 - p_true)
    probs = np.stack([1 - p_malignant, p_malignant], axis=1)
    assert conformal_quantile(p_true, 0.02, names.tolist()) >= CONFIDENT  # the level the coverage alone picks
    alpha, qhat = choose_alpha(probs, targets, 0.5, names.tolist())
    assert alpha == 0.05 and qhat < CONFIDENT
    assert not set_membership(probs, 0.5, qhat)[probs.max(axis=1) >= CONFIDENT].all(axis=1).any()
    assert coverage(probs[3000:], targets[3000:], 0.5, qhat)["coverage"] >= 0.95


@pytest.mark.parametrize(
    "label, prediction_set, in_distribution, decision",
    [
        ("malignant", ("malignant",), True, "malignant"),
        ("benign", ("benign",), True, "benign"),
        ("benign", ("benign", "malignant"), True, "uncertain"),
        ("benign", None, True, "benign"),  # no conformal calibration: the threshold decides
        ("benign", (), False, "not recognised"),
    ],
)
def test_the_decision_never_contradicts_the_set_or_the_check(label, prediction_set, in_distribution, decision):
    p = Prediction(label, 0.5, {"benign": 0.5, "malignant": 0.5}, 0.5, in_distribution, 1.0, prediction_set)
    assert p.decision == decision


def test_calibrate_fits_a_model_folder_without_retraining(small_cnn, tmp_path, capsys):
    folder = tmp_path / "model"
    save_model_folder(small_cnn, folder)
    weights = (folder / "model.safetensors").read_bytes()
    args = ["--model", str(folder), "--data", str(FIXTURES / "histopathology"), "--acceptance", "1.0"]
    # Any images with masks; one test image without its mask file is left out of the measure, not an error.
    shutil.copytree(FIXTURES / "ultrasound_masks", tmp_path / "masks")
    next((tmp_path / "masks" / "test").rglob("malignant_11.png")).unlink()
    masks = ["--masks", str(FIXTURES / "ultrasound"), str(tmp_path / "masks")]
    assert cli_main(["calibrate", *args, "--tta-views", "hflip", *masks, "--layers-over", "collections"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["validation"]["rejected"] == 0.0 and "coverage" in report["test"]
    assert (folder / "model.safetensors").read_bytes() == weights and (folder / "ood.safetensors").is_file()
    model = load_pretrained(folder)
    assert model.config.ood.acceptance == 1.0 and model.config.conformal.alpha in ALPHAS
    assert model.config.conformal.qhat_tta is not None and "tta_coverage" in report["test"]
    # H&E is a colour modality: a grey copy of one of its own tiles is refused, however close its features.
    tile = Image.open(fixture_images("histopathology")[0])
    assert model.config.ood.colour_floor > 0
    assert Predictor(model).predict(tile.convert("L")).decision == "not recognised"
    assert model.config.tta_views == "hflip" and model.ood_detector is not None
    card = (folder / "README.md").read_text()
    assert (
        "## Rejection, prediction sets and explanations" in card
        and "The feature-layer limits accept each of LC25000 colon (Borkowski et al. 2019) and LC25000 lung" in card
        and "lung_aca (malignant, " in card
        and "colon_n (benign, " in card
    )
    # The default map: the best-pointing candidate on the validation images, then measured on the test images.
    choice = model.config.training.evaluations["cam_choice"]
    assert len(choice) == len(model.cam_layer_candidates()) * len(CANDIDATE_METHODS)
    best = max(choice, key=lambda r: (r["peak_in_lesion"], r["heat_in_lesion"]))
    assert (model.config.cam_layers, model.config.cam_method) == (best["layers"], best["method"])
    explanations = model.config.training.explanations
    # 4 test images: normal_35 has no lesion, malignant_11 no mask file
    assert explanations["n"] == 2 and explanations["method"] == best["method"]
    assert "On 2 test images with known lesions (ultrasound (test)), this model's default map" in card
    assert f"({best['method']}) peaked inside the lesion" in card
    assert Predictor(model).explain(fixture_images("ultrasound")[0]).method == best["method"]

    (folder / "ood.safetensors").unlink()
    with pytest.raises(CheckpointError, match="ood.safetensors"):
        load_pretrained(folder)


def test_the_detector_of_a_large_set_is_fitted_on_a_sample_and_every_category_is_counted(small_cnn, monkeypatch):
    from cancer_models.data.decoding import decode_split
    from cancer_models.data.image_sets import load_splits
    from cancer_models.data.spec import DataSpec

    splits = {
        name: decode_split(ds, 96) for name, ds in load_splits(DataSpec([str(FIXTURES / "histopathology")])).items()
    }
    monkeypatch.setattr(fitting, "DETECTOR_SAMPLE", 8)  # the fixtures hold 12 training tiles, not 20,000
    report = fitting.fit_trust(small_cnn, splits)
    assert report["train"]["n"] == 8 and report["validation"]["n"] == 6
    assert sum(map(sum, small_cnn.config.training.subtypes.values())) == 12


def test_layer_limits_accept_each_collection_as_a_detector_fitted_without_it_scores_it(small_cnn):
    """Another lab's stain moves the feature distances as far as another modality: with two or more collections
    the layer limits are set on each collection scored by a detector fitted on the others."""
    from cancer_models.data.decoding import decode_split
    from cancer_models.data.image_sets import fold_indices, load_splits
    from cancer_models.data.spec import DataSpec
    from cancer_models.trust.distance import Gaussian

    splits = load_splits(DataSpec([str(FIXTURES / "histopathology")]))
    outputs = [fitting.split_outputs(small_cnn, decode_split(splits[n], 96)) for n in ("train", "validation")]
    features, statistics = torch.cat([o.features for o in outputs]), torch.cat([o.statistics for o in outputs])
    targets, sizes = np.concatenate([o.targets for o in outputs]), outputs[0].sizes
    groups = [*splits["train"]["group"], *splits["validation"]["group"]]
    collections = [*outputs[0].collections, *outputs[1].collections]
    folds = fold_indices(targets.tolist(), groups, 3, seed=0)
    _, by_groups = fitting.fit_rejection(features, statistics, targets, groups, sizes, folds, 1.0)
    _, by_collections = fitting.fit_rejection(
        features, statistics, targets, groups, sizes, folds, 1.0, None, collections
    )
    assert by_groups.layers_over_collections == []
    assert by_collections.layers_over_collections == sorted(set(collections)) and len(set(collections)) == 2
    # Each colon tile as a detector fitted on the lung tiles alone scores it (and the reverse).
    across = fitting.layer_scores_over_collections(features, targets, sizes, collections)
    colon = torch.tensor(["colon" in c for c in collections])
    lung_only = Gaussian.fit(features[~colon, : sizes[0]].double().numpy(), targets[~colon.numpy()])
    assert torch.allclose(across[colon, 0], lung_only.score(features[colon, : sizes[0]]), rtol=1e-4)
    # At acceptance 1.0 the layer limits take every such score; the other limits stay set over groups.
    assert (across <= torch.tensor(by_collections.layer_limits) * (1 + 1e-6)).all()
    assert all(c > g for c, g in zip(by_collections.layer_limits, by_groups.layer_limits, strict=True))
    assert by_collections.image_limit == pytest.approx(by_groups.image_limit)


def test_a_config_with_rejection_needs_its_statistics(small_cnn, tmp_path):
    small_cnn.config.ood = TrustSettings(layer_limits=[1.0])
    with pytest.raises(ConfigError, match="ood_detector"):
        save_model_folder(small_cnn, tmp_path)


def test_tta_uses_the_views_the_config_allows(small_cnn, histo_image):
    small_cnn.config.tta_views = "hflip"
    predictor = Predictor(small_cnn)
    x = predictor.preprocess([histo_image])
    with torch.no_grad():
        views = [normalize(v, small_cnn.config.mean, small_cnn.config.std) for v in (x, torch.flip(x, dims=(3,)))]
        expected = torch.stack([small_cnn(v).softmax(1) for v in views]).mean(0)[0, 1].item()
    assert predictor.predict(histo_image, tta=True).malignant_probability == pytest.approx(expected, abs=1e-5)


def test_shipped_models_carry_rejection_and_conformal_data():
    for folder in sorted((ROOT / "models").iterdir()):
        model = load_pretrained(folder)
        assert model.config.ood and model.config.conformal and model.ood_detector is not None, folder.name
        trust = model.config.training.trust
        test, level = trust["test"], 1 - model.config.conformal.alpha
        # A cross-validated ensemble is calibrated on its out-of-fold predictions (train + validation).
        calibration = trust.get("validation") or {"n": model.config.training.splits["train + validation"]}
        # Rejection accepts 99% of the train + validation groups (cross-fitted); a test split, from other source
        # images, sees up to 1.6% rejected.
        assert test["rejected"] <= 0.05, (folder.name, test)
        assert test["uncertain_when_confident"] == 0 and test["tta_uncertain_when_confident"] == 0, folder.name
        # Sets must hold on each collection of the test split (clinic, lab), not only on the mix. Coverage varies
        # with the calibration draw (a Beta around the level, Vovk 2012) and the test draw: three standard
        # deviations of both together, which is 0.14 for ultrasound's 75 and 77 images. The quantile is the
        # hardest collection's, so the others are covered more than the level by design: only the least covered
        # one must also stay near it from above.
        parts = test.get("per_collection") or {"": test}
        least = min(parts, key=lambda name: parts[name]["coverage"])
        for name, part in parts.items():
            n_calibration = (calibration.get("per_collection") or {}).get(name, calibration)["n"]
            sd = (level * (1 - level) * (1 / (n_calibration + 2) + 1 / part["n"])) ** 0.5
            for key in ("coverage", "tta_coverage"):
                assert part[key] >= level - 3 * sd, (folder.name, name, key, part)
                assert name != least or part[key] <= level + 3 * sd, (folder.name, name, key, part)
    assert load_pretrained(ROOT / "models" / "ultrasound-cancer-cnn").config.tta_views == "hflip"
    # The histopathology model's sets were calibrated to hold on each lab's validation tiles; its card says so.
    histopathology = ROOT / "models" / "histopathology-cancer-cnn"
    assert len(load_pretrained(histopathology).config.conformal.collections) == 3
    assert "to hold on each of GlaS" in (histopathology / "README.md").read_text()


def test_calibrate_can_refuse_whole_image_sets(small_cnn, tmp_path):
    folder = tmp_path / "model"
    save_model_folder(small_cnn, folder)
    # a set the model would accept (tiles like its own) stands in for another modality it lets through
    other = tmp_path / "look-alikes"
    shutil.copytree(FIXTURES / "histopathology" / "test", other / "test")
    args = ["--model", str(folder), "--data", str(FIXTURES / "histopathology"), "--acceptance", "1.0"]
    assert cli_main(["calibrate", *args, "--refuse", str(other)]) == 0
    model = load_pretrained(folder)
    ood = model.config.ood
    lowered = zip(ood.layer_limits, ood.layer_limits_before_refusal, strict=True)
    assert all(t < before for t, before in lowered) and set(ood.refused) == {"look-alikes"}
    predictions = Predictor(model).predict(sorted(other.rglob("*.jpg")))
    assert len(predictions) == 6 and not any(p.in_distribution for p in predictions)
    assert "every validation image of look-alikes" in (folder / "README.md").read_text()


def _statistics(images: list) -> torch.Tensor:
    return image_statistics(torch.stack([to_uint8_tensor(Image.open(i).convert("RGB"), 64) for i in images]))


def test_the_colour_floor_refuses_grey_images_only_for_colour_modalities():
    def floor_for(task: str) -> tuple[TrustSettings, list]:
        images = fixture_images(task, "validation")
        groups = [p.stem for p in images]
        floor = fit_colour_floor(_statistics(images), groups, 1.0)
        return TrustSettings(layer_limits=[1.0], colour_floor=floor), images

    histo, tiles = floor_for("histopathology")
    grey = [Image.open(p).convert("L").convert("RGB") for p in tiles]
    grey_statistics = image_statistics(torch.stack([to_uint8_tensor(im, 64) for im in grey]))
    assert (colour_ratio(_statistics(fixture_images("histopathology", "test")), histo) <= 1).all()
    assert (colour_ratio(grey_statistics, histo) > 1).all()
    ultrasound, _ = floor_for("ultrasound")  # a grey modality: the floor is (about) nothing
    assert ultrasound.colour_floor < 0.005 and (colour_ratio(grey_statistics, ultrasound) <= 1).all()


def test_the_domain_check_learns_to_refuse_scenes_and_is_saved_with_the_model(small_cnn, tmp_path, monkeypatch):
    from conftest import FULL_NEGATIVES

    monkeypatch.setattr(fitting, "NEGATIVE_COUNTS", FULL_NEGATIVES)  # what it learns at the product's count
    from cancer_models.calibration import negatives
    from cancer_models.data.decoding import decode_split
    from cancer_models.data.image_sets import load_splits
    from cancer_models.data.spec import DataSpec

    data = load_splits(DataSpec([str(FIXTURES / "histopathology")]))
    fitting.fit_trust(small_cnn, {name: decode_split(ds, 96) for name, ds in data.items()})
    ood = small_cnn.config.ood
    assert ood.domain_negatives["scenes"] >= 7 * 2 * 121 and ood.domain_negatives["generated"] > 0
    # other draws than the ones it learnt from: new scenes and crops, new generated images
    batch, _ = negatives.reference_negatives(96, seed=1)
    features, statistics = fitting.batch_features(small_cnn, batch)
    domain = small_cnn.ood_detector.scores(features, statistics)[:, -1] / ood.domain_limit
    assert (domain > 1).float().mean() >= 0.95
    tiles = Predictor(small_cnn).predict(fixture_images("histopathology", "test"))
    assert sum(p.in_distribution for p in tiles) >= 5  # of 6 unseen tiles of its kind

    save_model_folder(small_cnn, tmp_path)
    reloaded = load_pretrained(tmp_path)
    assert torch.equal(reloaded.ood_detector.domain.weight, small_cnn.ood_detector.domain.weight)
    assert [p.ood_score for p in Predictor(reloaded).predict(fixture_images("histopathology", "test"))] == [
        pytest.approx(p.ood_score) for p in tiles
    ]


def test_negatives_are_drawn_here_and_refitting_gives_identical_limits(small_cnn, monkeypatch):
    """No file is read (no photograph of another package), so the limits depend on the seed and the data only."""
    import builtins
    import copy

    from cancer_models.calibration import negatives
    from cancer_models.data.decoding import decode_split
    from cancer_models.data.image_sets import load_splits
    from cancer_models.data.spec import DataSpec

    with monkeypatch.context() as no_files:
        no_files.setattr(builtins, "open", lambda *a, **k: pytest.fail(f"negatives opened {a[0]}"))
        no_files.setattr(Image, "open", lambda *a, **k: pytest.fail(f"negatives opened {a[0]}"))
        first, counts = negatives.reference_negatives(64, per_scene=1, crops=3, per_kind=2)
    again, _ = negatives.reference_negatives(64, per_scene=1, crops=3, per_kind=2)
    assert torch.equal(first, again) and counts == {"scenes": 7 * 4, "generated": 7 * 2}

    monkeypatch.setattr(fitting, "NEGATIVE_COUNTS", {"per_scene": 1, "crops": 20, "per_kind": 4})
    splits = {n: decode_split(ds, 96) for n, ds in load_splits(DataSpec([str(FIXTURES / "histopathology")])).items()}
    twice = [copy.deepcopy(small_cnn), copy.deepcopy(small_cnn)]
    for model in twice:
        fitting.fit_trust(model, splits)
    assert twice[0].config.ood == twice[1].config.ood and twice[0].config.conformal == twice[1].config.conformal
    assert torch.equal(twice[0].ood_detector.domain.weight, twice[1].ood_detector.domain.weight)


def _flat_images() -> list[Image.Image]:
    colours = [(224, 172, 150), (190, 140, 120), (200, 120, 160), (128, 128, 128), (20, 20, 20), (250, 250, 250)]
    t = np.linspace(0, 1, 160)[None, :, None]
    ramps = [((230, 180, 160), (150, 90, 80)), ((0, 0, 0), (255, 255, 255))]
    gradients = [(np.array(a) + (np.array(b) - np.array(a)) * t).repeat(160, 0).astype(np.uint8) for a, b in ramps]
    return [Image.new("RGB", (160, 160), c) for c in colours] + [Image.fromarray(g) for g in gradients]


@pytest.mark.parametrize("task", ["histopathology", "dermoscopy", "ultrasound"])
def test_every_shipped_model_refuses_blank_and_flat_images(task):
    model = load_pretrained(ROOT / "models" / f"{task}-cancer-cnn")
    assert model.config.ood.texture_floor > 0
    predictions = Predictor(model).predict(_flat_images())
    assert not any(p.in_distribution for p in predictions), [round(p.ood_score, 2) for p in predictions]
    size = model.config.input_size  # and no image of its kind is too flat for it
    own = torch.stack([to_uint8_tensor(Image.open(p).convert("RGB"), size) for p in fixture_images(task, "test")])
    assert (texture_ratio(image_statistics(own), model.config.ood) <= 1).all()
