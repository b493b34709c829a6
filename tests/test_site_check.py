"""The site check (batch tests, verdict, accuracy estimate) and the feature guard: logic on synthetic features,
the command on a real run, and clear errors for bad input."""

import shutil

import numpy as np
import pytest

from conftest import FULLRES, run_cxr, writable_copy, write_image
from cxr.evaluation.accuracy_estimate import Condition, atc, estimate
from cxr.evaluation.shift_tests import STATISTICS
from cxr.evaluation.site_check import Batch, compare_batches
from cxr.inference.feature_guard import FeatureGuard
from cxr.runs.site_check_result import SiteCheck
from cxr.testing import run_cxr_commands


def _batch(n, shift=0.0, seed=0, labels=True, flagged=0.0, dims=12) -> Batch:
    """A batch of `n` synthetic X-rays: features, calibrated probabilities that follow the labels, statistics."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    penultimate = rng.normal(shift, 1.0, (n, dims)) + y[:, None] * 0.5
    logits = 2.5 * (2 * y - 1) + rng.normal(0, 1.5, n)
    return Batch(paths=[f"person{seed}_{i}_bacteria_1.jpeg" for i in range(n)],
                 groups=[f"p{seed}-{i}" for i in range(n)], labels=y if labels else None,
                 probs=1 / (1 + np.exp(-logits)), penultimate=penultimate,
                 features=np.concatenate([penultimate, rng.normal(shift, 1.0, (n, dims))], axis=1),
                 flagged=rng.random(n) < flagged,
                 statistics={name: rng.normal(100 + 10 * shift, 10, n) for name in STATISTICS},
                 population=rng.normal(shift, 1.0, (n, dims)))


def _check(candidate, reference=None):
    reference = reference or _batch(400, seed=1)
    return compare_batches(reference, candidate, threshold=0.5, train_prevalence=0.74,
                           validation_flagged=float(reference.flagged.mean()))


def test_a_batch_like_the_reference_is_same_and_its_accuracy_is_estimated_within_005():
    result = _check(_batch(300, seed=2))
    assert result["verdict"] == "same", result["why"]
    assert abs(result["feature_shift"]["domain_classifier_auc"] - 0.5) < 0.1
    assert abs(result["estimated_accuracy"] - result["accuracy"]) < 0.05
    # Every test the report lists was run, and none tells the two batches apart.
    assert set(result["p_values"]) == {"feature classifier", "feature MMD", "outputs KS", "guard rate",
                                       *(f"{name} KS" for name in STATISTICS)}
    assert min(result["p_values"].values()) >= result["alpha"] / len(result["p_values"])
    assert abs(result["output_shift"]["predicted_prevalence"]
               - result["output_shift"]["validation_predicted_prevalence"]) < 0.1


def test_a_mild_shift_is_shifted_and_another_population_different_without_an_estimate():
    mild = _check(_batch(300, shift=0.3, seed=3))
    assert mild["verdict"] == "shifted" and mild["estimated_accuracy"] is not None
    far = _check(_batch(300, shift=3.0, seed=4))
    assert far["verdict"] == "different" and far["feature_shift"]["domain_classifier_auc"] > 0.9
    assert far["estimated_accuracy"] is None and "cannot be estimated" in far["estimate_note"]
    flagged = _check(_batch(300, seed=5, flagged=0.6))
    assert flagged["verdict"] == "different" and "flag" in flagged["why"]


def test_atc_follows_accuracy_when_the_model_grows_less_sure():
    reference = _batch(600, seed=6)
    unsure = _batch(600, seed=7)
    unsure.probs = 1 / (1 + np.exp(-np.log(unsure.probs / (1 - unsure.probs)) * 0.4))  # margins shrink
    sure = _batch(600, seed=8)
    assert atc(reference.probs, reference.labels, unsure.probs, 0.5) < atc(reference.probs, reference.labels,
                                                                          sure.probs, 0.5)


def _condition(name, accuracy, agreement, n=3000, seed=0, atc_value=None):
    """A labelled condition whose model is right on `accuracy` of the X-rays and agrees with the second opinion
    on `agreement` of them."""
    rng = np.random.default_rng(seed)
    return Condition(name, rng.random(n) < accuracy, rng.random(n) < agreement,
                     accuracy if atc_value is None else atc_value)


def test_the_agreement_line_reads_accuracy_off_agreement_and_the_lower_estimate_leads():
    # Validation's families: accuracy falls with agreement on a line; ATC over-confident by 0.05 throughout.
    pairs = [(0.95, 0.93), (0.92, 0.89), (0.88, 0.84), (0.85, 0.80), (0.80, 0.74), (0.90, 0.87)]
    conditions = [_condition(f"family {i}", acc, agree, seed=i, atc_value=acc + 0.05)
                  for i, (acc, agree) in enumerate(pairs)]
    folder_agree = np.random.default_rng(9).random(600) < 0.82  # between the families: accuracy about 0.86
    result = estimate(conditions, folder_agree, folder_atc=0.93)
    assert abs(result["methods"]["agreement"]["estimate"] - 0.86) < 0.03
    assert result["lead"] == "agreement" and result["estimated_accuracy"] < 0.9
    assert "disagree" in result["note"]
    low, high = result["interval"]
    assert low < result["estimated_accuracy"] < high and high - low < 0.15
    # Checked family by family without the family: each row's estimate is near its measured accuracy.
    assert all(abs(r["agreement"] - r["measured"]) < 0.04 for r in result["validation"])
    assert {r["condition"] for r in result["validation"]} == {c.name for c in conditions}


def test_false_alarms_stay_rare_on_batches_of_the_same_distribution():
    verdicts = [_check(_batch(120, seed=100 + i), _batch(120, seed=200 + i))["verdict"] for i in range(8)]
    assert verdicts.count("same") >= 7, verdicts


def test_too_few_images_for_a_batch_test_is_a_clear_error():
    from cxr.errors import DataError

    with pytest.raises(DataError, match="at least 10"):
        _check(_batch(5, seed=9))


def test_feature_guard_flags_about_one_percent_of_validation_and_far_points():
    rng = np.random.default_rng(0)
    train = {"penultimate": rng.normal(0, 1, (2000, 16)), "intermediate": rng.normal(0, 1, (2000, 8))}
    val = {"penultimate": rng.normal(0, 1, (1000, 16)), "intermediate": rng.normal(0, 1, (1000, 8))}
    guard = FeatureGuard.fit(train, val)
    assert guard.flags(guard.score(val)).mean() == pytest.approx(0.01, abs=0.002)
    far = {"penultimate": rng.normal(0, 1, (100, 16)), "intermediate": rng.normal(4, 1, (100, 8))}
    assert guard.flags(guard.score(far)).mean() > 0.9  # one block alone is enough
    assert not guard.population  # fitted without the frozen network's block: the model's two


def test_the_population_block_flags_what_the_models_features_cannot_tell_apart():
    """Another population that the model's own features place among the training X-rays (a fine-tuned network
    keeps what separates its classes), but that a frozen network sees as different."""
    rng = np.random.default_rng(1)

    def blocks(n, population_shift=0.0):
        return {"penultimate": rng.normal(0, 1, (n, 16)), "intermediate": rng.normal(0, 1, (n, 8)),
                "population": rng.normal(0, 1, (n, 40)) + population_shift * (np.arange(40) % 2)}

    train, val, adults = blocks(2000), blocks(1000), blocks(200, population_shift=3.0)
    with_population = FeatureGuard.fit(train, val)
    model_only = FeatureGuard.fit({k: train[k] for k in ("penultimate", "intermediate")},
                                  {k: val[k] for k in ("penultimate", "intermediate")})
    assert with_population.population
    assert with_population.flags(with_population.score(val)).mean() <= 0.011
    assert with_population.flags(with_population.score(adults)).mean() > 0.9
    assert model_only.flags(model_only.score(adults)).mean() < 0.05



@pytest.mark.integration
def test_site_check_of_a_folder_writes_json_markdown_and_figure(trained_run, tmp_path):
    out = tmp_path / "check"
    result = run_cxr("site-check", FULLRES, "--against", trained_run, "--out", out)
    assert result.returncode == 0, result.stderr[-2000:]
    found = SiteCheck.read(out / SiteCheck.FILE)
    assert found.verdict in ("same", "shifted", "different") and found.images == 40
    assert 0 <= found.guard_rate <= 1 and found.accuracy is not None  # the folder's layout gives labels
    assert (out / "site_check.png").stat().st_size > 10_000 and "Verdict" in (out / "site_check.md").read_text()
    assert found.verdict.upper() in result.stdout


@pytest.mark.integration
def test_site_check_bad_inputs_get_clear_errors(trained_run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    one = tmp_path / "one"
    writable_copy(FULLRES / "NORMAL", one, ignore=lambda d, names: sorted(names)[1:])
    junk = tmp_path / "junk"
    for i in range(3):
        (junk / f"{i}.jpeg").parent.mkdir(exist_ok=True)
        (junk / f"{i}.jpeg").write_text("not an image")
    no_model = tmp_path / "no_model"
    writable_copy(trained_run, no_model, ignore=shutil.ignore_patterns("model.keras"))
    write_image(tmp_path / "unused.png")
    cases = [((empty, "--against", trained_run), "no image files"),
             ((one, "--against", trained_run), "at least 10"),
             ((junk, "--against", trained_run), "could be read"),
             ((FULLRES, "--against", no_model), "model file not found"),
             (("--against", trained_run), "give a FOLDER or --split")]
    codes, result = run_cxr_commands(*(["site-check", *args] for args, _ in cases))  # one process, as a script
    assert codes == [1] * len(cases) and "Traceback" not in result.stderr, result.stderr[-2000:]
    at = 0
    for args, message in cases:  # each command's message, in order
        at = result.stderr.find(message, at)
        assert at >= 0, (args, message, result.stderr[-2000:])
