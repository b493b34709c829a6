"""Framing: tight crops as a training augmentation (more of NORMAL), and validation copies framed tighter."""

from pathlib import Path

import numpy as np

from conftest import write_image
from cxr.data.framing import FRAMED_CROPS, crop_borders, framed_validation, framing_augmentation
from cxr.data.preprocess import Preprocessing


def _blank_share(batch):
    """Share of black pixels at the image edge: 0 for an unchanged image, > 0 after a zoom-out."""
    edge = np.concatenate([batch[:, 0, :, 0], batch[:, -1, :, 0], batch[:, :, 0, 0], batch[:, :, -1, 0]], axis=1)
    return (edge == 0).mean(axis=1)


def test_tight_crops_enlarge_the_anatomy_and_come_more_often_for_normal():
    import tensorflow as tf

    n, size = 400, 32
    image = np.full((size, size), 200, np.uint8)
    image[8:24, 8:24] = 50  # a dark square in the middle: a tight crop makes it larger
    images = tf.constant(np.repeat(image[None, ..., None], n, axis=0))
    labels = tf.constant(np.repeat([0, 1], n // 2).astype(np.int32))
    framed = framing_augmentation(images, labels, tf.constant([1, 2])).numpy()
    assert framed.shape == (n, size, size, 1) and framed.dtype == np.uint8
    again = framing_augmentation(images, labels, tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(framed, again)  # the draw is a function of the seed: resume repeats it
    dark = (framed[..., 0] < 125).mean(axis=(1, 2))
    enlarged = dark > (image < 125).mean() + 0.05
    normal, pneumonia = enlarged[: n // 2].mean(), enlarged[n // 2:].mean()
    assert 0.3 < normal and pneumonia < normal - 0.15, (normal, pneumonia)
    assert 0.05 < (_blank_share(framed) > 0.5).mean() < 0.4  # some zoom-outs, for both classes


def test_framed_validation_adds_changed_copies_spread_over_every_condition(tmp_path):
    from cxr.data.dataset import Part
    from cxr.data.framing import COPIES, validation_conditions
    from cxr.data.images import read_grayscale

    prep = Preprocessing(32)
    n = 20
    paths = [write_image(tmp_path / f"IM-00{i:02d}-0001.jpeg", size=(80, 60)) for i in range(n)]
    images = np.stack([prep.apply(read_grayscale(p.read_bytes(), 32)) for p in paths])[..., None]
    labels = np.arange(n) % 2
    part = Part(images, labels, paths, [f"p{i}" for i in range(n)])
    framed = framed_validation(part, prep)
    conditions = list(validation_conditions())
    assert len(framed.labels) == n * (1 + COPIES)
    assert list(framed.framings[:n]) == [0] * n
    # Every condition is present, an image is never changed twice the same way, and labels follow their images.
    assert set(framed.framings[n:]) == set(range(1, len(conditions) + 1))
    for row in range(n, len(framed.labels)):
        j = paths.index(framed.paths[row])
        assert framed.labels[row] == labels[j] and framed.patients[row] == f"p{j}"
    pairs = {(framed.paths[r], framed.framings[r]) for r in range(n, len(framed.labels))}
    assert len(pairs) == n * COPIES
    # A framing copy is the cropped original, preprocessed.
    row = int(np.flatnonzero(framed.framings == 1)[0])
    source = read_grayscale(Path(framed.paths[row]).read_bytes(), 32)
    assert conditions[0] == "borders_cropped_10%"
    np.testing.assert_array_equal(framed.images[row, ..., 0], prep.apply(crop_borders(source, FRAMED_CROPS[0])))


def test_reframing_a_preprocessed_xray_approaches_preprocessing_the_cropped_original():
    """The augmentation acts on preprocessed images; with exact equalization and a blank frame it must still
    give what a tighter original gives: the frame blank, the grey levels inside it equalized again, the
    anatomy enlarged as in the cropped original."""
    import cv2
    import tensorflow as tf
    from PIL import Image

    from conftest import CHEST_XRAY
    from cxr.data.framing import reframe

    path = next((CHEST_XRAY / "train" / "NORMAL").glob("IM-*.jpeg"), None)
    if path is None:
        import pytest

        pytest.skip("needs a real X-ray")
    original = np.asarray(Image.open(path).convert("L"))
    prep, share = Preprocessing(64, "squash", "exact", "frame"), 0.2
    wide = prep.apply(original)
    got = reframe(tf.constant(wide[None, ..., None]), tf.constant([[share] * 4]), prep).numpy()[0, ..., 0]
    plain = reframe(tf.constant(wide[None, ..., None]), tf.constant([[share] * 4]), Preprocessing(64, border="frame"))
    inside = (slice(6, 58),) * 2
    assert (got[:6] == 0).all() and (got[:, -6:] == 0).all()  # the blank frame, as the preprocessing leaves it
    counts = np.bincount(got[inside].ravel(), minlength=256)
    plain_counts = np.bincount(plain.numpy()[0, ..., 0][inside].ravel(), minlength=256)
    assert counts.std() < 0.5 * plain_counts.std()  # equalized again: a flat histogram, unlike the crop alone

    def blurred(image):
        return cv2.GaussianBlur(image.astype(np.float32), (0, 0), 2)[8:56, 8:56]

    wanted = blurred(prep.apply(crop_borders(original, share)))
    assert np.abs(blurred(got) - wanted).mean() < 0.7 * np.abs(blurred(wide) - wanted).mean()


def test_crops_cut_from_the_larger_images_are_as_sharp_as_a_tightly_framed_original():
    """A crop of the model-size image, enlarged back, is blurred; cut from the images at FINE times the size
    it is close to the preprocessed crop of the original (what a tight framing and the framed validation give),
    and an image the draw leaves alone passes unchanged."""
    import tensorflow as tf

    from cxr.data.framing import FINE, crop_borders, reframe

    rng = np.random.default_rng(0)
    original = (rng.random((256, 256)) * 255).astype(np.uint8)  # fine texture: what blur destroys first
    prep, share = Preprocessing(64), 0.2
    small, fine = prep.apply(original), prep.at_size(FINE * 64).apply(original)
    target = prep.apply(crop_borders(original, share)).astype(np.float32)
    margins = tf.constant([[share] * 4, [0.0] * 4])
    batch = tf.constant(np.stack([small, small])[..., None])
    sharp = reframe(batch, margins, prep, tf.constant(np.stack([fine, fine])[..., None])).numpy()[..., 0]
    blurry = reframe(batch, margins, prep).numpy()[..., 0]
    error_sharp = np.abs(sharp[0].astype(np.float32) - target).mean()
    error_blurry = np.abs(blurry[0].astype(np.float32) - target).mean()
    assert error_sharp < 0.7 * error_blurry, (error_sharp, error_blurry)
    np.testing.assert_array_equal(sharp[1], small)
