import numpy as np
import pytest

from cxr.evaluation.metrics import (
    binary_metrics,
    bootstrap_ci,
    calibration,
    choose_threshold,
    choose_threshold_worst_framing,
    expected_calibration_error,
    full_report,
    weighted_metrics,
)
from cxr.inference.temperature import apply_temperature, fit_temperature


def test_metrics_match_hand_computed_values():
    labels = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    probs = [0.1, 0.2, 0.6, 0.3, 0.9, 0.8, 0.4, 0.7, 0.95, 0.55]
    m = binary_metrics(labels, probs, threshold=0.5)
    # predicted: 0 0 1 0 | 1 1 0 1 1 1  ->  tn=3 fp=1 fn=1 tp=5
    assert m["confusion_matrix"] == [[3, 1], [1, 5]]
    assert m["n"] == 10
    assert m["accuracy"] == pytest.approx(8 / 10)
    assert m["sensitivity"] == pytest.approx(5 / 6)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["precision"] == pytest.approx(5 / 6)
    assert m["f1"] == pytest.approx(5 / 6)
    # AUC: pairs (pos > neg) / 24: positive 0.4 beats 0.1, 0.2, 0.3 only; 0.55 beats all but 0.6.
    assert m["roc_auc"] == pytest.approx((4 + 4 + 3 + 4 + 4 + 3) / 24)


def test_a_score_equal_to_the_threshold_counts_as_pneumonia():
    assert binary_metrics([0, 1], [0.5, 0.5], 0.5)["confusion_matrix"] == [[0, 1], [0, 1]]


def test_threshold_is_the_most_specific_one_that_keeps_sensitivity():
    labels = np.array([0] * 10 + [1] * 20)
    probs = np.concatenate([np.linspace(0.0, 0.6, 10), np.linspace(0.3, 1.0, 20)])
    threshold = choose_threshold(labels, probs, min_sensitivity=0.95)
    m = binary_metrics(labels, probs, threshold)
    assert m["sensitivity"] >= 0.95
    # Any higher threshold loses sensitivity below the target.
    higher = min(p for p in probs if p > threshold)
    assert binary_metrics(labels, probs, higher)["sensitivity"] < 0.95


def _framed_scores(rng, n=400, shift=0.25):
    """Scores of unchanged validation images and of two tighter copies, each crop pulling every score towards
    the middle (a crop hides evidence both ways: pneumonia scores fall, normal scores rise)."""
    labels = rng.integers(0, 2, n)
    base = np.clip(0.15 + 0.7 * labels + rng.normal(0, 0.12, n), 0, 1)
    copies = [base] + [base + (0.5 - base) * shift * k + rng.normal(0, 0.03, n) for k in (1, 2)]
    return np.tile(labels, 3), np.clip(np.concatenate(copies), 0, 1), np.repeat([0, 1, 2], n)


def test_framed_threshold_does_best_on_the_worst_framing_and_keeps_the_sensitivity_floor():
    labels, probs, framings = _framed_scores(np.random.default_rng(0))
    threshold = choose_threshold_worst_framing(labels, probs, framings)

    def worst_balanced(t):
        return min((binary_metrics(labels[framings == f], probs[framings == f], t)["sensitivity"]
                    + binary_metrics(labels[framings == f], probs[framings == f], t)["specificity"]) / 2
                   for f in (0, 1, 2))

    best = max(worst_balanced(t) for t in np.arange(0.01, 1.0, 0.01))
    assert worst_balanced(threshold) >= best - 0.01
    # Where the best balance would miss more than 5% of the unchanged pneumonia X-rays, the floor wins: one
    # pneumonia X-ray in five is a hard case scored between 0.3 and 0.6.
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 600)
    hard = rng.random(600) < 0.2
    probs = np.where(labels == 1, np.where(hard, rng.uniform(0.3, 0.6, 600), rng.normal(0.85, 0.05, 600)),
                     rng.normal(0.2, 0.1, 600)).clip(0, 1)
    framings = np.zeros(600, int)
    threshold = choose_threshold_worst_framing(labels, probs, framings)
    assert binary_metrics(labels, probs, threshold)["sensitivity"] >= 0.95
    assert binary_metrics(labels, probs, 0.5)["sensitivity"] < 0.95  # where balance alone would put it


def test_framed_threshold_does_not_ride_on_a_few_borderline_images():
    labels, probs, framings = _framed_scores(np.random.default_rng(1))
    threshold = choose_threshold_worst_framing(labels, probs, framings)
    moved = probs.copy()
    near = np.argsort(np.abs(probs - threshold))[:5]  # the five images closest to the threshold change sides
    moved[near] = np.where(probs[near] >= threshold, threshold - 0.02, threshold + 0.02)
    assert abs(choose_threshold_worst_framing(labels, moved, framings) - threshold) <= 0.02


def test_threshold_on_perfectly_separated_scores_keeps_everything_right():
    labels = [0, 0, 0, 1, 1, 1]
    probs = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]
    m = binary_metrics(labels, probs, choose_threshold(labels, probs))
    assert m["accuracy"] == 1.0


def test_bootstrap_interval_brackets_the_estimate_and_narrows_with_more_data():
    rng = np.random.default_rng(0)

    def sample(n):
        labels = rng.integers(0, 2, n)
        probs = np.clip(labels * 0.3 + rng.normal(0.35, 0.2, n), 0, 1)
        return labels, probs

    small, large = sample(100), sample(2000)
    ci_small = bootstrap_ci(*small, 0.5, n_boot=300)
    ci_large = bootstrap_ci(*large, 0.5, n_boot=300)
    point = binary_metrics(*large, 0.5)
    for name in ("accuracy", "roc_auc", "sensitivity"):
        lo, hi = ci_large[name]
        assert lo <= point[name] <= hi
        assert hi - lo < ci_small[name][1] - ci_small[name][0]


def test_a_weighted_resample_scores_as_the_images_repeated_that_many_times():
    """The bootstrap scores resamples as counts per image; each must equal scikit-learn on the repeated images,
    ties among the probabilities included."""
    rng = np.random.default_rng(2)
    labels = rng.random(60) < 0.6
    for decimals in (1, 6):  # many ties, then almost none
        probs = np.round(rng.random(60), decimals)
        counts = rng.integers(0, 3, (25, 60))
        counts[0, labels] = 0  # a resample that drew no pneumonia: skipped by the bootstrap
        weighted = weighted_metrics(labels, probs, 0.5, counts)
        assert all(np.isnan(values[0]) for values in weighted.values())
        for row, count in enumerate(counts[1:], start=1):
            repeated = np.repeat(np.arange(60), count)
            expected = binary_metrics(labels[repeated], probs[repeated], 0.5)
            for name, values in weighted.items():
                assert values[row] == pytest.approx(expected[name], nan_ok=True), (decimals, row, name)


def test_full_report_has_every_field_users_read():
    labels = [0, 1] * 20
    probs = np.linspace(0, 1, 40)
    report = full_report(labels, probs, 0.4)
    for key in ("n", "threshold", "threshold_rule", "accuracy", "sensitivity", "specificity", "precision", "f1",
                "roc_auc", "pr_auc", "confusion_matrix", "at_0.5", "ci95"):
        assert key in report
    assert report["at_0.5"]["threshold"] == 0.5


def test_patient_bootstrap_is_wider_than_image_bootstrap_when_patients_repeat():
    """Ten copies of each patient look like ten times the data to an image bootstrap; not to a patient one."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 60)
    probs = np.clip(labels * 0.3 + rng.normal(0.35, 0.2, 60), 0, 1)
    repeated_labels, repeated_probs = np.repeat(labels, 10), np.repeat(probs, 10)
    patients = np.repeat(np.arange(60), 10)
    by_image = bootstrap_ci(repeated_labels, repeated_probs, 0.5, n_boot=400)
    by_patient = bootstrap_ci(repeated_labels, repeated_probs, 0.5, groups=patients, n_boot=400)
    unrepeated = bootstrap_ci(labels, probs, 0.5, n_boot=400)
    width = {name: ci["accuracy"][1] - ci["accuracy"][0]
             for name, ci in (("image", by_image), ("patient", by_patient), ("plain", unrepeated))}
    assert width["patient"] > 2 * width["image"]
    assert width["patient"] == pytest.approx(width["plain"], rel=0.35)


def test_temperature_scaling_fixes_overconfidence_and_keeps_the_ranking():
    rng = np.random.default_rng(3)
    true_logits = rng.normal(0, 2, 4000)
    truth = 1 / (1 + np.exp(-true_logits))
    labels = (rng.random(truth.size) < truth).astype(int)  # drawn from calibrated probabilities
    overconfident = 1 / (1 + np.exp(-3 * true_logits))  # the same ranking, logits three times too large
    temperature = fit_temperature(labels, overconfident)
    assert temperature == pytest.approx(3.0, rel=0.15)
    calibrated = apply_temperature(overconfident, temperature)
    assert expected_calibration_error(labels, calibrated) < expected_calibration_error(labels, overconfident) / 2
    assert calibration(labels, calibrated)["brier"] < calibration(labels, overconfident)["brier"]
    assert binary_metrics(labels, calibrated, 0.5)["roc_auc"] == pytest.approx(
        binary_metrics(labels, overconfident, 0.5)["roc_auc"], abs=1e-4)  # a monotone map: same ranking
    assert expected_calibration_error(labels, truth) < 0.03
