"""The lung-field box (cxr.data.thorax) on drawn chests, and the framing probe it feeds."""

import numpy as np
import pytest

from cxr.data.thorax import WHOLE, framing_features, thorax_box
from cxr.evaluation.probe import probe_auc


def drawn_chest(size=224, scale=1.0, seed=0):
    """A black background, a bright body, two dark lungs beside a bright mediastinum, a bright belly.

    `scale` enlarges the whole chest about the image centre (a tighter framing). Returns the image and the
    true lung box as shares (top, left, height, width).
    """
    import cv2

    rng = np.random.default_rng(seed)
    image = np.zeros((size, size), np.uint8)
    c, s = size / 2, scale * size
    cv2.ellipse(image, (int(c), int(c + 0.05 * s)), (int(0.42 * s), int(0.48 * s)), 0, 0, 360, 190, -1)
    lungs = [(c - 0.2 * s, c - 0.05 * s), (c + 0.2 * s, c - 0.05 * s)]
    axes = (int(0.13 * s), int(0.25 * s))
    for x, y in lungs:
        cv2.ellipse(image, (int(x), int(y)), axes, 0, 0, 360, 90, -1)
    image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    top, left = (c - 0.05 * s - axes[1]) / size, (lungs[0][0] - axes[0]) / size
    return image, (top, left, 2 * axes[1] / size, (lungs[1][0] + axes[0] - lungs[0][0] + axes[0]) / size)


@pytest.mark.parametrize("scale", [0.8, 1.0])
def test_the_box_holds_both_drawn_lungs(scale):
    image, truth = drawn_chest(scale=scale)
    box = thorax_box(image)
    assert box.found
    np.testing.assert_allclose(box[:4], truth, atol=0.04)


def test_no_lungs_falls_back_to_the_whole_image_and_says_so():
    assert thorax_box(np.zeros((100, 100), np.uint8)) == WHOLE and not WHOLE.found
    assert thorax_box(np.full((100, 100), 150, np.uint8)) == WHOLE
    features, found = framing_features(np.zeros((3, 64, 64, 1), np.uint8))
    assert features.shape == (3, 7) and not found.any()


def test_the_framing_probe_sees_framing_that_tells_the_class_and_nothing_otherwise():
    wide = [drawn_chest(128, 0.7 + 0.05 * (i % 3), seed=i)[0] for i in range(40)]
    tight = [drawn_chest(128, 0.95 + 0.05 * (i % 3), seed=100 + i)[0] for i in range(40)]
    labels = np.repeat([0, 1], 40)
    features, found = framing_features(np.stack(wide + tight))
    assert found.all() and probe_auc(features, labels) > 0.95
    shuffled = np.random.default_rng(0).permutation(labels)  # same images, labels that framing cannot tell
    assert probe_auc(features, shuffled) < 0.75
