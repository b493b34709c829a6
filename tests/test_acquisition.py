"""Acquisition shift: the held-out validation families, the training augmentation of other forms, the
burned-in text probe and the rule that reads them."""

import dataclasses

import numpy as np
import pytest

from cxr.data.acquisition import SEEN_IN_TRAINING, VALIDATION_CHANGES, burned_in_text
from cxr.data.acquisition_augment import TRAIN_FAMILIES, acquisition_augmentation, text_bank
from cxr.data.preprocess import Preprocessing


def _chest(size=(180, 220), seed=0) -> np.ndarray:
    """A synthetic X-ray: dark lungs in a brighter body, a gradient and some texture, every grey level used."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    body = 90 + 100 * yy + 20 * np.sin(12 * xx)
    lungs = (((xx - 0.3) ** 2 / 0.02 + (yy - 0.45) ** 2 / 0.08 < 1)
             | ((xx - 0.7) ** 2 / 0.02 + (yy - 0.45) ** 2 / 0.08 < 1))
    image = body - 60 * lungs + rng.normal(0, 6, size)
    image[0, 0], image[0, 1] = 0, 255
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", list(VALIDATION_CHANGES))
def test_each_validation_change_is_deterministic_identity_at_zero_and_stays_uint8(name):
    change, image = VALIDATION_CHANGES[name], _chest()
    out = change(image)
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out, change(image.copy()))  # the same X-ray gets the same change
    np.testing.assert_array_equal(change(image, strength=0.0), image)
    assert np.abs(out.astype(int) - image).mean() > 0.5, "at full strength the change must change the image"
    weak = np.abs(change(image, strength=0.3).astype(int) - image).mean()
    assert weak <= np.abs(out.astype(int) - image).mean() + 1e-9  # strength orders the amount of change


def test_burned_in_text_writes_bright_marks_near_the_edges_only():
    image = np.full((200, 240), 60, np.uint8)
    changed = burned_in_text(image)
    marked = changed > 120
    assert marked.any()
    rows, cols = np.nonzero(marked)
    centre = (np.abs(rows / 200 - 0.5) < 0.25) & (np.abs(cols / 240 - 0.5) < 0.25)
    assert centre.mean() < 0.05, "annotations sit in the corners and along the edges, not over the lungs"


def test_every_validation_family_names_its_training_counterpart():
    assert set(SEEN_IN_TRAINING) == set(VALIDATION_CHANGES)
    assert {v for v in SEEN_IN_TRAINING.values() if v} <= set(TRAIN_FAMILIES)
    assert any(v is None for v in SEEN_IN_TRAINING.values()), "some families stay unseen in any form"


def _batch(n=64, size=32):
    return np.stack([Preprocessing(size).apply(_chest(seed=i)) for i in range(n)])[..., None]


def test_training_augmentation_is_identity_at_zero_deterministic_and_in_range():
    import tensorflow as tf

    x, prep = _batch(), Preprocessing(32)
    bank = tf.constant(text_bank(32, seed=1))
    seed = tf.constant([3, 4])
    out = acquisition_augmentation(tf.constant(x), seed, bank, prep).numpy()
    assert out.dtype == np.uint8 and out.shape == x.shape
    np.testing.assert_array_equal(out, acquisition_augmentation(tf.constant(x), seed, bank, prep).numpy())
    assert not np.array_equal(out, acquisition_augmentation(tf.constant(x), tf.constant([3, 5]), bank, prep).numpy())
    np.testing.assert_array_equal(acquisition_augmentation(tf.constant(x), seed, bank, prep, strength=0.0).numpy(), x)
    changed = np.abs(out.astype(int) - x).reshape(len(x), -1).mean(axis=1) > 0.5
    assert 0.4 < changed.mean() < 1.0, "most images changed, not all (each family has its own chance)"


def test_training_augmentation_keeps_an_equalised_input_equalised_and_the_frame_blank():
    import tensorflow as tf

    prep = Preprocessing(32, intensity="exact", border="frame")
    x = np.stack([prep.apply(_chest(seed=i)) for i in range(16)])[..., None]
    out = acquisition_augmentation(tf.constant(x), tf.constant([0, 1]), tf.constant(text_bank(32, 0)), prep).numpy()
    from cxr.data.preprocess import frame_px

    k = frame_px(32)
    assert (out[:, :k] == 0).all() and (out[:, -k:] == 0).all() and (out[:, :, :k] == 0).all()
    inner = out[:, k:-k, k:-k, 0].reshape(16, -1)
    # After equalisation every grey level is used about equally: the spread of a uniform histogram.
    assert np.allclose(inner.mean(axis=1), 127.5, atol=3) and np.allclose(inner.std(axis=1), 73.9, atol=3)


def test_text_bank_is_fixed_by_its_seed_and_leaves_the_middle_free():
    bank = text_bank(64, seed=7, count=8)
    np.testing.assert_array_equal(bank, text_bank(64, seed=7, count=8))
    assert bank.min() >= 0 and bank.max() <= 1 and (bank.reshape(8, -1).max(axis=1) > 0.3).all()
    assert bank[:, 24:40, 24:40].max() < 0.5


def test_normal_flips_counts_normal_calls_turned_into_pneumonia():
    from cxr.evaluation.stress import normal_flips

    labels = np.array([0, 0, 0, 0, 1])
    before = np.array([0.1, 0.2, 0.3, 0.9, 0.9])
    after = np.array([0.6, 0.2, 0.7, 0.9, 0.1])
    flips = normal_flips(labels, before, after, threshold=0.5)
    assert flips["normal_called_normal"] == 3 and flips["flipped_to_pneumonia"] == pytest.approx(2 / 3)
    assert flips["mean_probability_change"] == pytest.approx((0.5 + 0.0 + 0.4) / 3)
    assert normal_flips(np.array([1]), np.array([0.1]), np.array([0.9]), 0.5)["flipped_to_pneumonia"] is None


def _stress_val(worst_name=None, worst=0.6):
    from cxr.evaluation.selection import CONDITIONS
    from cxr.runs.results import Condition, Stress

    row = Condition(sensitivity=0.95, specificity=0.9, roc_auc=0.97, accuracy=0.93)
    return Stress(run="r", images=10, threshold=0.5, shortcut_probe_auc=0.5, side="val", baseline=row, perturbations={
        name: dataclasses.replace(row, specificity=worst if name == worst_name else 0.9) for name in CONDITIONS[1:]})


def test_the_rule_reads_framing_and_at_least_four_acquisition_families_including_text():
    from cxr.evaluation.selection import CONDITIONS
    from cxr.evaluation.stress import PERTURBATIONS

    assert CONDITIONS[:3] == ("none", "borders_cropped_10%", "borders_cropped_20%")
    acquisition = [c for c in CONDITIONS if c in PERTURBATIONS and PERTURBATIONS[c][0] == "acquisition"]
    assert len(acquisition) >= 4 and any("text" in c for c in acquisition)


def test_the_rule_chooses_by_the_worst_condition_and_marks_what_a_run_trained_against():
    from cxr.evaluation.selection import choose, robust_scores

    framed_well = robust_scores(_stress_val("burned_in_text", 0.5), ["framing", "text"])
    text_safe = robust_scores(_stress_val("borders_cropped_20%", 0.7), [])
    assert framed_well["worst_condition"] == "burned_in_text"
    assert framed_well["worst_balanced_accuracy"] == pytest.approx((0.95 + 0.5) / 2)
    assert framed_well["by_condition"]["burned_in_text"]["seen_in_training"]
    assert framed_well["by_condition"]["borders_cropped_10%"]["seen_in_training"]
    assert not framed_well["by_condition"]["jpeg_recompressed"]["seen_in_training"]
    assert framed_well["worst_unseen_balanced_accuracy"] == pytest.approx((0.95 + 0.9) / 2)
    assert choose({"a": framed_well, "b": text_safe}) == "b"
    assert not any(s["seen_in_training"] for s in text_safe["by_condition"].values())
