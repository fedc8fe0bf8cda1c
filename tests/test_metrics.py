import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from cancer_models.calibration.temperature import fit_temperature
from cancer_models.evaluation.compare import paired_auc_difference
from cancer_models.evaluation.metrics import (
    binary_metrics,
    choose_threshold,
    expected_calibration_error,
    rank_auc,
    subtype_metrics,
)
from cancer_models.reporting.tables import metrics_table

Y = [0, 0, 1, 1, 1]
P = [0.1, 0.6, 0.4, 0.8, 0.9]


def test_metrics_against_hand_computed_values():
    m = binary_metrics(Y, P, threshold=0.5, n_bootstrap=0)
    # TP = 0.8, 0.9; FN = 0.4; FP = 0.6; TN = 0.1
    assert m["confusion_matrix"] == [[1, 1], [1, 2]]
    assert (m["n"], m["n_benign"], m["n_malignant"]) == (5, 2, 3)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(1 / 2)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    # 6 (benign, malignant) pairs; 5 ranked correctly (0.6 > 0.4 is the miss)
    assert m["auc"] == pytest.approx(5 / 6)
    # confidences 0.9, 0.6, 0.6, 0.8, 0.9; bins: {0.9, 0.9} all right, {0.6, 0.6} all wrong, {0.8} right
    assert m["ece"] == pytest.approx(2 / 5 * 0.1 + 2 / 5 * 0.6 + 1 / 5 * 0.2)
    assert expected_calibration_error(np.array(Y), np.array(P)) == pytest.approx(0.32)


def test_threshold_moves_the_confusion_matrix():
    assert binary_metrics(Y, P, threshold=0.35, n_bootstrap=0)["confusion_matrix"] == [[1, 1], [0, 3]]


def test_single_class_data_has_no_auc():
    m = binary_metrics([1, 1, 1], [0.2, 0.7, 0.9], 0.5, n_bootstrap=50)
    assert m["auc"] is None and m["specificity"] is None and m["sensitivity"] == pytest.approx(2 / 3)


def test_bootstrap_intervals_contain_the_estimate_and_groups_widen_them():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    p = np.clip(y * 0.3 + rng.random(60) * 0.7, 0, 1)
    # 8 near-copies of each image, as LC25000 has: resampling copies alone overstates the evidence
    y8, p8 = np.repeat(y, 8), np.repeat(p, 8)
    groups = np.repeat(np.arange(60), 8).astype(str)
    by_image = binary_metrics(y8, p8, 0.5, n_bootstrap=300)
    by_group = binary_metrics(y8, p8, 0.5, groups=groups, n_bootstrap=300)
    for m in (by_image, by_group):
        lo, hi = m["auc_ci"]
        assert lo <= m["auc"] <= hi
        assert m["accuracy_ci"][0] <= m["accuracy"] <= m["accuracy_ci"][1]
    width = lambda m: m["auc_ci"][1] - m["auc_ci"][0]
    assert width(by_group) > 2 * width(by_image)
    assert by_group["bootstrap"] == {"resamples": 300, "unit": "group"}


def test_threshold_rules():
    y = [0, 0, 0, 1, 1, 1]
    p = [0.1, 0.2, 0.45, 0.4, 0.7, 0.9]
    # Youden is best (J = 2/3) from 0.7 down to just above 0.45: the midpoint of that gap
    assert choose_threshold(y, p, "youden") == pytest.approx((0.7 + 0.45) / 2)
    # all malignant found from 0.4 down to just above 0.2
    assert choose_threshold(y, p, "sensitivity=1.0") == pytest.approx((0.4 + 0.2) / 2)
    assert choose_threshold(y, p, "0.3") == 0.3
    with pytest.raises(ValueError, match="youden"):
        choose_threshold(y, p, "best")
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        choose_threshold(y, p, "1.5")


def test_youden_ties_take_the_middle_optimal_cut_not_an_end():
    # Alternating labels: Youden's J is 0.25 at each of the four cuts between a malignant and a benign score;
    # the rule takes the upper of the two middle ones, where the old one took the highest (0.75).
    y = [1, 0, 1, 0, 1, 0, 1, 0]
    p = [0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    j = lambda t: np.mean(np.array(p)[np.array(y) == 1] >= t) - np.mean(np.array(p)[np.array(y) == 0] >= t)
    cuts = [(0.8 + 0.7) / 2, (0.6 + 0.5) / 2, (0.4 + 0.3) / 2, (0.2 + 0.1) / 2]
    best = max(j(c) for c in cuts)
    tied = [c for c in cuts if j(c) == pytest.approx(best)]
    assert len(tied) == 4
    assert choose_threshold(y, p, "youden") == pytest.approx(tied[1])


def test_separable_validation_gets_a_threshold_in_the_middle_of_the_gap():
    assert choose_threshold([0, 0, 1, 1], [0.01, 0.02, 0.98, 0.99]) == pytest.approx(0.5)


def test_temperature_scaling_recovers_a_known_temperature():
    torch.manual_seed(0)
    z = torch.randn(20000, 2) * 3
    y = torch.distributions.Categorical(logits=z / 2.5).sample()
    assert fit_temperature(z, y) == pytest.approx(2.5, rel=0.05)


def test_temperature_is_left_at_one_when_validation_has_no_errors():
    """Perfectly separated logits have no finite NLL optimum; fitting would push T to its floor (all p ~ 0 or 1)."""
    z = torch.tensor([[2.0, -1.0], [1.5, 0.0], [-0.5, 1.0], [0.0, 3.0]])
    y = torch.tensor([0, 0, 1, 1])
    assert fit_temperature(z, y) == 1.0
    y_with_one_error = torch.tensor([0, 1, 1, 1])
    assert fit_temperature(z, y_with_one_error) != 1.0


def test_perfect_results_get_an_exact_interval_not_a_zero_width_one():
    # 40 groups of 5 near-copies, all classified correctly: the bootstrap can only ever say 1.0.
    y = np.repeat(np.arange(40) % 2, 5)
    p = np.where(y == 1, 0.9, 0.1)
    groups = np.repeat(np.arange(40), 5).astype(str)
    m = binary_metrics(y, p, 0.5, groups=groups, n_bootstrap=200)
    assert m["accuracy"] == 1.0
    # Clopper-Pearson for 40/40 independent units: lower bound 0.025 ** (1 / 40)
    assert m["accuracy_ci"][0] == pytest.approx(0.025 ** (1 / 40), abs=1e-6) and m["accuracy_ci"][1] == 1.0
    assert m["sensitivity_ci"][0] == pytest.approx(0.025 ** (1 / 20), abs=1e-6)
    assert set(m["bootstrap"]["exact_binomial_for"]) == {"accuracy", "sensitivity", "specificity"}


def test_no_auc_interval_when_one_patient_holds_a_class():
    """A test split of two patients, one benign and one malignant (GlaS's): every resample that can rank holds
    both, so a bootstrap interval would have zero width and claim certainty."""
    rng = np.random.default_rng(0)
    y = np.array([0] * 80 + [1] * 90)
    p = np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1)
    two_patients = ["benign patient"] * 80 + ["malignant patient"] * 90
    m = binary_metrics(y, p, 0.5, two_patients)
    assert m["auc"] > 0.8 and m["auc_ci"] is None and "auc" in m["bootstrap"]["no_interval_for"]
    # nor for sensitivity and specificity: one patient each, the exact binomial over units would say [0, 0.975]
    assert m["sensitivity_ci"] is None and m["specificity_ci"] is None and m["accuracy_ci"] is not None
    assert "| ROC AUC | 0." in metrics_table(m) and "none for auc, " in metrics_table(m)  # the card says why
    five_each = [f"benign {i % 5}" for i in range(80)] + [f"malignant {i % 5}" for i in range(90)]
    wide = binary_metrics(y, p, 0.5, five_each)["auc_ci"]
    assert wide[0] < m["auc"] < wide[1]
    difference = paired_auc_difference(y, p, p**2, two_patients)
    assert difference["ci"] is None and difference["p_value"] is None and difference["difference"] == 0


def test_rank_auc_is_sklearns_auc_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(50):
        y = rng.integers(0, 2, 40)
        y[:2] = [0, 1]
        p = rng.integers(0, 6, 40) / 5  # coarse scores: many ties
        assert rank_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_per_category_figures_are_each_classes_own_hit_rate():
    y = [0, 0, 0, 1, 1, 1, 1, 0]
    p = [0.1, 0.2, 0.9, 0.8, 0.7, 0.3, 0.9, 0.4]
    out = subtype_metrics(y, p, 0.5, ["nevus", "nevus", "nevus", "melanoma", "melanoma", "bcc", "bcc", ""])
    assert set(out) == {"nevus", "melanoma", "bcc"}  # no category named: left out
    assert out["nevus"]["metric"] == "specificity" and out["nevus"]["value"] == pytest.approx(2 / 3)
    assert out["melanoma"]["value"] == 1.0 and out["bcc"]["value"] == 0.5 and out["bcc"]["label"] == 1
    low, high = out["nevus"]["ci"]
    assert 0 < low < 2 / 3 < high < 1 and out["nevus"]["too_few"]


def test_screening_operating_points_match_the_roc_curve():
    """Sensitivity at 90% specificity and specificity at 90% sensitivity: the best point of the full ROC curve
    (every threshold, ties included) that meets the other figure."""
    from sklearn.metrics import roc_curve

    from cancer_models.evaluation.metrics import sensitivity_at_specificity, specificity_at_sensitivity

    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(5, 60))
        y = rng.integers(0, 2, n)
        if len(set(y)) < 2:
            continue
        p = np.round(rng.random(n) + y * rng.random(n), 2)  # rounded: ties between and within classes
        fpr, tpr, _ = roc_curve(y, p, drop_intermediate=False)
        assert sensitivity_at_specificity(y, p, 0.9) == pytest.approx(max(t for f, t in zip(fpr, tpr) if 1 - f >= 0.9))
        assert specificity_at_sensitivity(y, p, 0.9) == pytest.approx(max(1 - f for f, t in zip(fpr, tpr) if t >= 0.9))
    m = binary_metrics(y, p, 0.5, n_bootstrap=200)
    assert m["sensitivity_at_90_specificity_ci"][0] <= m["sensitivity_at_90_specificity"] <= m[
        "sensitivity_at_90_specificity_ci"][1]  # fmt: skip
