"""Class-activation maps point at the evidence, are never silently blank, and work for every model type."""

import keras
import numpy as np
import pytest

from cxr.inference.explain import HiResCam
from cxr.models import build

# 128 px: the cnn's last convolution sees a 12 x 12 grid there (cells of about 11 px), fine enough to point.
SIZE = 128
PNEUMONIA_BLOB = (32, 92)  # (row, col): the evidence; NORMAL images have no blob
RADIUS = 12


def blob_images(n, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    images = rng.normal(90, 20, (n, SIZE, SIZE))
    for i in np.flatnonzero(labels):
        r, c = PNEUMONIA_BLOB[0] + rng.integers(-4, 5), PNEUMONIA_BLOB[1] + rng.integers(-4, 5)
        images[i] += 120 * (((yy - r) ** 2 + (xx - c) ** 2) < RADIUS**2)
    return np.clip(images, 0, 255).astype(np.float32)[..., None], labels


@pytest.fixture(scope="module")
def saturated_cnn():
    """The seed CNN trained until it is certain: the case where plain Grad-CAM maps came out all zeros."""
    keras.utils.set_random_seed(0)
    model = build("cnn", SIZE).model
    x, y = blob_images(240)
    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
    model.fit(x, y, epochs=12, batch_size=16, verbose=0)
    return model


def test_map_of_a_pneumonia_call_peaks_on_the_blob(saturated_cnn):
    x, y = blob_images(20, seed=1)
    found = HiResCam(saturated_cnn).explain(x[y == 1])
    assert found.probs.min() > 0.9, "the model did not learn the synthetic task"
    assert not found.blank.any() and np.all(found.explained == 1)
    # Most of each map lies on the blob: within 24 px of its centre, 11% of the image. (Where its single peak
    # falls moves by a grid cell, about 11 px, from one CPU's arithmetic to another's; the mass does not.)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    near = np.hypot(yy - PNEUMONIA_BLOB[0], xx - PNEUMONIA_BLOB[1]) < 2 * RADIUS
    shares = [h[near].sum() / h.sum() for h in found.heatmaps]
    assert np.median(shares) > 0.5 and near.mean() < 0.12, shares


def test_a_normal_call_gets_a_map_of_the_evidence_for_normal(saturated_cnn):
    x, y = blob_images(20, seed=1)
    found = HiResCam(saturated_cnn).explain(x[y == 0])
    assert found.probs.max() < 0.1
    assert np.all(found.explained == 0) and not found.blank.any()
    assert all(h.max() == pytest.approx(1.0) for h in found.heatmaps)
    assert found.caption(0) == "evidence for NORMAL"


def test_the_threshold_decides_which_class_is_explained(saturated_cnn):
    x, y = blob_images(4, seed=2)
    at_half = HiResCam(saturated_cnn).explain(x, threshold=0.5)
    nothing_is_pneumonia = HiResCam(saturated_cnn).explain(x, threshold=1.01)
    np.testing.assert_array_equal(at_half.explained, y)
    assert np.all(nothing_is_pneumonia.explained == 0)


def test_a_map_without_evidence_is_reported_blank_not_drawn():
    model = build("cnn", SIZE).model
    for w in model.weights:  # a model that finds no evidence anywhere: all weights zero
        w.assign(np.zeros(w.shape))
    found = HiResCam(model).explain(blob_images(2)[0])
    assert found.blank.all() and np.all(found.heatmaps == 0)
    assert found.caption(0).startswith("no positive evidence")


def test_maps_work_through_a_nested_frozen_base():
    """The case where naive Keras Grad-CAM code fails with 'Graph disconnected'."""
    keras.utils.set_random_seed(0)
    built = build("vgg16", SIZE, pretrained=False)
    x, _ = blob_images(4)
    found = HiResCam(built.model).explain(x)
    assert found.heatmaps.shape == (4, SIZE, SIZE)
    assert np.all((found.heatmaps >= 0) & (found.heatmaps <= 1))
    np.testing.assert_allclose(found.probs, built.model.predict(x, verbose=0).reshape(-1), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["cnn_aug", "xception", "densenet121", "mobilenetv2_e2e"])
def test_every_model_type_gets_a_map(name):
    """Each architecture's map explains the probability the model gives, and each image either gets a map with
    weight somewhere or is marked blank with the caption that says so, never a silent zero map."""
    keras.utils.set_random_seed(0)
    size = 80
    model = build(name, size, pretrained=False).model
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 1)).astype(np.float32)
    found = HiResCam(model).explain(x)
    assert found.heatmaps.shape == (2, size, size)
    np.testing.assert_allclose(found.probs, model.predict(x, verbose=0).reshape(-1), rtol=1e-4, atol=1e-5)
    for i in range(2):
        assert found.blank[i] == (found.heatmaps[i].max() == 0), i
        assert found.blank[i] or found.heatmaps[i].max() == pytest.approx(1.0), i  # scaled to its peak
        assert found.caption(i).startswith("no positive evidence") == bool(found.blank[i]), i


# The size each kind is trained at in the demo (vgg16_e2e: 64 px, densenet121_e2e: 96 px), and the default
# size otherwise.
KIND_SIZES = {"vgg16_e2e": 64, "densenet121_e2e": 96}


@pytest.mark.parametrize("name", __import__("cxr.models", fromlist=["names"]).names())
def test_every_registered_kind_is_explained_on_a_grid_of_at_least_8_by_8(name):
    from cxr.inference.replay import MIN_GRID

    size = KIND_SIZES.get(name, SIZE)
    cam = HiResCam(build(name, size, pretrained=False).model)
    assert min(cam.grid) >= MIN_GRID, (name, cam.layer.name, cam.grid)
    assert cam.description["grid"] == list(cam.grid) and cam.layer.name in cam.title


def test_an_ensemble_map_is_its_members_maps_combined_as_their_logits_are():
    """Two members at 64 and 32 px (the second sees the ensemble's input averaged over 2 x 2 blocks): the
    ensemble's logit is the mean of theirs, and its map is the mean of their maps on the ensemble's grid."""
    import tensorflow as tf

    from cxr.inference.explain import EnsembleCam
    from cxr.models.ensemble import build_ensemble

    keras.utils.set_random_seed(1)
    big, small = build("cnn_seed", 64).model, build("cnn_seed", 32).model
    x = np.random.default_rng(3).uniform(0, 255, (3, 64, 64, 1)).astype(np.float32)
    cam = EnsembleCam([(big, 64), (small, 32)], ["big", "small"])
    combined, logits = cam.signed(x)
    ensemble = build_ensemble([big, small], [64, 32], 64, tta=False)
    probs = ensemble.predict(x, verbose=0).reshape(-1)
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), probs, rtol=1e-4, atol=1e-6)
    map_big, _ = HiResCam(big).signed(x)
    map_small, _ = HiResCam(small).signed(x.reshape(3, 32, 2, 32, 2, 1).mean(axis=(2, 4)))
    resized = tf.image.resize(map_small[..., None], (64, 64), method="bilinear")[..., 0].numpy() / 4
    np.testing.assert_allclose(combined, (map_big + resized) / 2, rtol=1e-5, atol=1e-7)
    assert [m["run"] for m in cam.description["members"]] == ["big", "small"]
    found = cam.explain(x)
    assert found.heatmaps.shape == (3, 64, 64) and np.array_equal(found.explained, (probs >= 0.5).astype(int))
