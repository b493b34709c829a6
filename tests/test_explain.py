"""Grad-CAM points at the evidence, for a plain CNN and for a frozen base nested in the model."""

import keras
import numpy as np
import pytest

from cxr.explain import GradCam
from cxr.models import build

SIZE = 64
PNEUMONIA_BLOB = (16, 46)  # (row, col): the evidence; NORMAL images have no blob


def blob_images(n, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    images = rng.normal(90, 20, (n, SIZE, SIZE))
    for i in np.flatnonzero(labels):
        r, c = PNEUMONIA_BLOB[0] + rng.integers(-2, 3), PNEUMONIA_BLOB[1] + rng.integers(-2, 3)
        images[i] += 120 * (((yy - r) ** 2 + (xx - c) ** 2) < 6 ** 2)
    return np.clip(images, 0, 255).astype(np.float32)[..., None], labels


def trained(model):
    x, y = blob_images(240)
    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=8, batch_size=16, verbose=0)
    keras.utils.set_random_seed(0)
    return model


def peak_distance(model):
    x, y = blob_images(20, seed=1)
    pneumonia = x[y == 1]
    heatmaps, probs = GradCam(model).heatmaps(pneumonia)
    assert probs.mean() > 0.8, "the model did not learn the synthetic task"
    distances = []
    for heatmap in heatmaps:
        r, c = np.unravel_index(np.argmax(heatmap), heatmap.shape)
        distances.append(np.hypot(r - PNEUMONIA_BLOB[0], c - PNEUMONIA_BLOB[1]))
    return np.median(distances)


def test_heatmap_peak_lies_on_the_blob_for_the_cnn():
    keras.utils.set_random_seed(0)
    assert peak_distance(trained(build("cnn", SIZE).model)) < 10


def test_gradcam_works_through_a_nested_frozen_base():
    """The case where naive Keras Grad-CAM code fails with 'Graph disconnected'."""
    keras.utils.set_random_seed(0)
    built = build("vgg16", SIZE, pretrained=False)
    x, _ = blob_images(4)
    heatmaps, probs = GradCam(built.model).heatmaps(x)
    assert heatmaps.shape == (4, SIZE, SIZE)
    assert np.all((heatmaps >= 0) & (heatmaps <= 1))
    np.testing.assert_allclose(probs, built.model.predict(x, verbose=0).reshape(-1), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["cnn_aug", "xception"])
def test_gradcam_gives_a_heatmap_for_every_model_type(name):
    size = 80
    model = build(name, size, pretrained=False).model
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 1)).astype(np.float32)
    heatmaps, probs = GradCam(model).heatmaps(x)
    assert heatmaps.shape == (2, size, size) and probs.shape == (2,)
