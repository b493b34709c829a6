"""Framing: how tightly an X-ray is cropped around the chest. In the training batch NORMAL X-rays are framed
wide and PNEUMONIA X-rays tighter, so "large anatomy in the frame" predicts the label there, and a model
that learns it calls tightly framed NORMAL X-rays from another hospital PNEUMONIA.

Two remedies live here:
- `framed_validation`: the validation split plus copies cropped 10% and 20% from every side or under the
  held-out acquisition changes (cxr.data.acquisition), so the temperature, the threshold and early stopping
  are chosen on data that shows the shifts;
- `framing_augmentation`: random tight crops (more often of NORMAL than of PNEUMONIA, so that apparent
  anatomy size carries no label) and zoom-outs of every training batch (targeted augmentation).
"""

from pathlib import Path

import numpy as np

from cxr.data.preprocess import Preprocessing, frame_px

FRAMING_MODES = ("none", "targeted")  # TrainConfig.framing
PLAIN = Preprocessing()  # squashed, nothing else: the seed models' input
FRAMED_CROPS = (0.10, 0.20)  # share cut from every side in the framed validation copies
COPIES = 2  # changed copies of each validation image while training (each under another condition)
MAX_CROP = 0.25  # a tight crop cuts up to this share from every side, plus or minus JITTER per side
JITTER = 0.08
TIGHT_CHANCE = {0: 0.6, 1: 0.3}  # chance of a tight crop by label (NORMAL, PNEUMONIA)
ZOOM_OUT_CHANCE, MAX_ZOOM_OUT = 0.2, 0.15  # black margin added to each side, as a wider framing
# Crops are cut from the training images preprocessed at this multiple of the model's size: a crop of the
# model-size image, enlarged back, would be blurrier than a tightly framed X-ray (or the framed validation
# copies, cut from the decoded originals), and sharpness would then tell a crop from a real tight framing.
FINE = 2


def crop_borders(image: np.ndarray, share: float) -> np.ndarray:
    """The image with `share` of its height and width cut from every side (a tighter framing)."""
    h, w = image.shape
    dy, dx = int(share * h), int(share * w)
    return image[dy: h - dy, dx: w - dx]


def validation_conditions() -> dict:
    """Every change the validation split is judged on besides "none", in a fixed order (name -> function of a
    decoded X-ray): the framings, then the held-out acquisition families (cxr.data.acquisition)."""
    from cxr.data.acquisition import VALIDATION_CHANGES

    crops = {f"borders_cropped_{round(100 * share)}%": (lambda im, share=share: crop_borders(im, share))
             for share in FRAMED_CROPS}
    return {**crops, **VALIDATION_CHANGES}


def framed_validation(part, prep, copies: int = COPIES):
    """`part` (a data.dataset.Part) followed by changed copies of its images, `copies` of each, made before
    `prep`: image j under validation_conditions() number j % K and (j + K / copies) % K, ... of the K, so each
    condition changes about copies / K of the images, of both classes, and validation costs what the
    unchanged split and two framings cost before the acquisition families came. `framings` numbers the rows'
    conditions in validation_conditions() order (0: unchanged). An image whose file can no longer be read
    keeps only its unchanged copy. (`cxr stress` judges every image under every condition.)"""
    from cxr.data.dataset import Part
    from cxr.data.images import read_grayscale
    from cxr.data.pixels import ImageError

    changes = list(validation_conditions().values())
    images, labels, paths, patients = [part.images], [part.labels], list(part.paths), list(part.patients)
    framings = [np.zeros(len(part.labels), np.int32)]
    originals = []
    for i, path in enumerate(part.paths):
        try:
            originals.append((i, read_grayscale(Path(path).read_bytes(), prep.size)))
        except (OSError, ImageError):
            continue
    k = len(changes)
    for copy in range(min(copies, k)):
        chosen = [(j + copy * k // copies) % k for j in range(len(originals))]
        order = np.argsort(chosen, kind="stable")  # rows grouped by condition
        images.append(np.stack([prep.apply(changes[chosen[j]](originals[j][1])) for j in order])[..., None])
        kept = [originals[j][0] for j in order]
        labels.append(part.labels[kept])
        framings.append(np.array([chosen[j] + 1 for j in order], np.int32))
        paths += [part.paths[i] for i in kept]
        patients += [part.patients[i] for i in kept]
    return Part(np.concatenate(images), np.concatenate(labels), paths, patients, np.concatenate(framings))


def framing_augmentation(images, labels, seed, prep: Preprocessing = PLAIN, fine=None):
    """Random framings of a batch of (b, size, size, 1) images preprocessed by `prep` (TensorFlow); crops
    are cut from `fine` (the same images preprocessed at FINE times the size) where given.

    A tight crop, with a chance that depends on the label, cuts t ~ U(0, MAX_CROP) from every side, each
    side moved by its own U(-JITTER, JITTER): a whole X-ray framed tighter (the shift between hospitals),
    not only one side (with sides drawn independently, all four sides cut by 20% almost never happens). A
    zoom-out adds U(0, MAX_ZOOM_OUT) of black to each side, only where the preprocessing keeps black
    margins (border handling would cut them off an original). `seed` (two integers) fixes the draw: a
    resumed run sees the same batches.
    """
    import tensorflow as tf

    n = tf.shape(images)[0]
    u = tf.random.stateless_uniform((n, 11), seed)
    tight_chance = tf.where(tf.equal(labels, 0), TIGHT_CHANCE[0], TIGHT_CHANCE[1])
    sides = tf.maximum(0.0, u[:, 10:11] * MAX_CROP + (2.0 * u[:, 1:5] - 1.0) * JITTER)
    margins = tf.cast(u[:, :1] < tight_chance[:, None], tf.float32) * sides
    if prep.border == "none":
        margins -= tf.cast(u[:, 5:6] < ZOOM_OUT_CHANCE, tf.float32) * u[:, 6:10] * MAX_ZOOM_OUT
    return reframe(images, margins, prep, fine)


def reframe(images, margins, prep: Preprocessing = PLAIN, fine=None):
    """The images as `prep` would have made them from originals with `margins` (n, 4: top, bottom, left,
    right shares; negative: black added) cut from each side; cut from `fine` (the same images at a larger
    size) where given, and an image whose margins are all zero is then passed through unchanged.

    The crop acts on what the preprocessing shows inside its blank frame, and is followed by the same
    intensity step: exact equalization keeps the order of grey levels, so ranking the cropped pixels again
    gives what equalizing the cropped original gives (up to resampling). Without that step the crop would
    keep the grey levels of the wide framing, and a model would still meet a different image at test time.
    """
    import tensorflow as tf

    size, source = images.shape[1], images if fine is None else fine
    k = frame_px(size) if prep.border == "frame" else 0
    inner = size - 2 * k
    big = source.shape[1]
    kb = frame_px(big) if prep.border == "frame" else 0
    content = source[:, kb: big - kb, kb: big - kb]  # crop_and_resize reads uint8 as it is, in float32 out
    boxes = tf.stack([margins[:, 0], margins[:, 2], 1.0 - margins[:, 1], 1.0 - margins[:, 3]], axis=1)
    framed = tf.image.crop_and_resize(content, boxes, tf.range(tf.shape(images)[0]), (inner, inner),
                                      extrapolation_value=0.0)
    if prep.intensity in ("exact", "equalize"):  # both spread the grey levels by rank; CLAHE is local: kept
        framed = equalized(framed)
    framed = tf.pad(framed, [[0, 0], [k, k], [k, k], [0, 0]])
    framed = tf.cast(tf.clip_by_value(tf.round(framed), 0, 255), images.dtype)
    if fine is None:
        return framed
    unchanged = tf.reduce_all(tf.equal(margins, 0.0), axis=1)[:, None, None, None]
    return tf.where(unchanged, images, framed)


def equalized(images):
    """(b, h, w, 1) float images with their grey levels replaced by their ranks spread over 0..255 (TensorFlow):
    what exact equalisation of the same image gives, up to how ties are ordered."""
    import tensorflow as tf

    pixels = images.shape[1] * images.shape[2]
    flat = tf.reshape(images, (-1, pixels))
    ranks = tf.argsort(tf.argsort(flat, axis=1, stable=True), axis=1, stable=True)
    return tf.reshape(tf.cast(ranks * 256 // pixels, tf.float32), tf.shape(images))
