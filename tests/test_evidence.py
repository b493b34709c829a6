"""The evidence audit: where the evidence maps put their weight, per region, class and call."""

import keras
import numpy as np
import pytest

from cxr.data.thorax import WHOLE, Box
from cxr.evaluation.evidence import REGIONS, evidence_shares, region_masks
from cxr.inference.explain import HiResCam

SIZE = 64
CORNER = 4  # the top-left 4 x 4 pixels, inside the outer 10% band


def corner_model() -> keras.Model:
    """A model whose decision depends only on the top-left corner: everything else is cut away before the
    convolutions, which have no bias (so zeros elsewhere stay zero)."""
    keras.utils.set_random_seed(0)
    cut = SIZE - CORNER
    return keras.Sequential([
        keras.Input((SIZE, SIZE, 1)),
        keras.layers.Rescaling(1 / 255.0),
        keras.layers.Cropping2D(((0, cut), (0, cut))),
        keras.layers.ZeroPadding2D(((0, cut), (0, cut))),
        keras.layers.Conv2D(4, 3, padding="same", use_bias=False, activation="relu",
                            kernel_initializer=keras.initializers.RandomUniform(0.1, 0.5)),
        keras.layers.Conv2D(4, 3, padding="same", use_bias=False, activation="relu",
                            kernel_initializer=keras.initializers.RandomUniform(0.1, 0.5)),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(1, activation="sigmoid", name="pneumonia"),
    ])


def test_a_model_that_reads_only_a_corner_has_its_evidence_in_the_border():
    model = corner_model()
    images = np.random.default_rng(0).uniform(0, 255, (8, SIZE, SIZE, 1)).astype(np.float32)
    found = HiResCam(model).explain(images, threshold=0.0)  # every call PNEUMONIA: evidence for it, all positive
    box = Box(0.2, 0.2, 0.5, 0.6)
    shares = [evidence_shares(h, region_masks(SIZE, box)) for h in found.heatmaps]
    assert all(s is not None for s in shares)
    assert min(s["border"] for s in shares) >= 0.9, shares


@pytest.mark.parametrize("box", [Box(0.2, 0.15, 0.55, 0.7), WHOLE, Box(0.0, 0.0, 0.3, 0.3)])
def test_regions_cover_the_image_once_and_put_the_lungs_in_their_box(box):
    masks = region_masks(SIZE, box)
    assert set(masks) == set(REGIONS)
    np.testing.assert_array_equal(sum(m.astype(int) for m in masks.values()), np.ones((SIZE, SIZE), int))
    rows, cols = np.nonzero(masks["lungs"])
    if rows.size:
        assert rows.min() / SIZE >= box.top - 1 / SIZE and (rows.max() + 1) / SIZE <= box.top + box.height + 1 / SIZE
    assert not masks["border"][SIZE // 2, SIZE // 2] and masks["border"][0, SIZE // 2]


def test_shares_sum_to_one_and_a_blank_map_has_none():
    masks = region_masks(SIZE, Box(0.2, 0.2, 0.5, 0.6))
    heatmap = np.random.default_rng(1).uniform(0, 1, (SIZE, SIZE))
    assert sum(evidence_shares(heatmap, masks).values()) == pytest.approx(1.0)
    assert evidence_shares(np.zeros((SIZE, SIZE)), masks) is None
    below = np.zeros((SIZE, SIZE))
    below[int(0.8 * SIZE), SIZE // 2] = 1.0
    assert evidence_shares(below, masks)["below"] == 1.0
