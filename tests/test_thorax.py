"""The lung-field box (cxr.data.thorax) on drawn chests, and the framing probe it feeds."""

import numpy as np
import pytest

from cxr.data.preprocess import Preprocessing
from cxr.data.thorax import WHOLE, crop_to_thorax, framing_features, thorax_box
from cxr.evaluation.probe import probe_auc


def drawn_chest(size=224, scale=1.0, seed=0, lungs=2):
    """A black background, a bright body, two dark lungs beside a bright mediastinum, a bright belly.

    `scale` enlarges the whole chest about the image centre (a tighter framing); `lungs=1` draws the left one
    only. Returns the image and the true lung box as shares (top, left, height, width).
    """
    import cv2

    rng = np.random.default_rng(seed)
    image = np.zeros((size, size), np.uint8)
    c, s = size / 2, scale * size
    cv2.ellipse(image, (int(c), int(c + 0.05 * s)), (int(0.42 * s), int(0.48 * s)), 0, 0, 360, 190, -1)
    centres = [(c - 0.2 * s, c - 0.05 * s), (c + 0.2 * s, c - 0.05 * s)]
    axes = (int(0.13 * s), int(0.25 * s))
    for x, y in centres[:lungs]:
        cv2.ellipse(image, (int(x), int(y)), axes, 0, 0, 360, 90, -1)
    image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    top, left = (c - 0.05 * s - axes[1]) / size, (centres[0][0] - axes[0]) / size
    return image, (top, left, 2 * axes[1] / size, (centres[1][0] + axes[0] - centres[0][0] + axes[0]) / size)


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


def test_the_thorax_crop_makes_a_wide_and_a_tight_framing_alike():
    """The same chest framed wide (a zoom-out) and tight: cropped to the lungs they preprocess to nearly the
    same image, where plain squashing keeps the difference in apparent anatomy size."""
    wide, tight = drawn_chest(scale=0.7, seed=1)[0], drawn_chest(scale=1.0, seed=2)[0]

    def apart(prep):
        return np.abs(prep.apply(wide).astype(float) - prep.apply(tight)).mean()

    thorax, plain = apart(Preprocessing(64, border="thorax")), apart(Preprocessing(64))
    assert thorax < 0.4 * plain, (thorax, plain)


def test_the_thorax_crop_keeps_the_whole_xray_where_it_finds_no_chest():
    """No lungs, or a box on one side of the middle (one lung, or a shoulder's soft tissue taken for one):
    cutting to it would keep half a chest, so the whole X-ray is kept."""
    one_lung, _ = drawn_chest(lungs=1)
    assert thorax_box(one_lung).found
    for image in (one_lung, np.zeros((80, 80), np.uint8)):
        np.testing.assert_array_equal(crop_to_thorax(image), image)


def test_the_framing_probe_sees_framing_that_tells_the_class_and_nothing_otherwise():
    wide = [drawn_chest(128, 0.7 + 0.05 * (i % 3), seed=i)[0] for i in range(40)]
    tight = [drawn_chest(128, 0.95 + 0.05 * (i % 3), seed=100 + i)[0] for i in range(40)]
    labels = np.repeat([0, 1], 40)
    features, found = framing_features(np.stack(wide + tight))
    assert found.all() and probe_auc(features, labels) > 0.95
    shuffled = np.random.default_rng(0).permutation(labels)  # same images, labels that framing cannot tell
    assert probe_auc(features, shuffled) < 0.75
