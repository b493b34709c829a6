"""Acquisition augmentation for training batches (TensorFlow): random processing curves, sharpening or blur,
detector noise and burned-in text, drawn independently of the label, so that none of them can tell the class.

Its forms differ from the held-out validation families of cxr.data.acquisition (see there): a model is never
judged on exactly the change it was trained against.
"""

import numpy as np

from cxr.data.preprocess import Preprocessing, frame_px

# The families it varies, each with its chance per image (independent): the one list of them.
CHANCE = {"tone": 0.5, "sharpen": 0.25, "text": 0.4, "noise": 0.3, "blur": 0.2}
TRAIN_FAMILIES = tuple(CHANCE)
MAX_LOG_GAMMA = 0.5  # gamma in [e^-0.5, e^0.5] = [0.61, 1.65]
MAX_WINDOW = 0.12  # black and white points moved in by up to this share of the grey range
MAX_SHARPEN = 2.0  # gain of a 3 x 3 sharpening
MAX_NOISE = 10.0 / 255.0  # standard deviation of additive noise
TEXT_BANK = 48  # pre-drawn annotation overlays to choose from
_SMOOTH = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]) / 16.0


def _strings(rng: np.random.Generator) -> list[str]:
    """Dates, identifiers, device and side labels: other words than the validation family's."""
    return [f"{rng.integers(1, 29):02d}/{rng.integers(1, 13):02d}/{rng.integers(2005, 2024)}",
            f"ID {rng.integers(10**5, 10**6)}", f"SN{rng.integers(100, 999)}  {rng.integers(60, 120)}cm",
            str(rng.choice(["DX", "CR", "ERECT", "SITTING", "R", "L", "PA"])),
            f"{rng.integers(1, 12)}.{rng.integers(0, 9)} s  {rng.integers(1, 500)}uGy"]


def text_bank(size: int, seed: int, count: int = TEXT_BANK) -> np.ndarray:
    """`count` (size, size) float32 overlays in [0, 1], each with two to four annotations along the edges, drawn
    at twice the size in Pillow's default TrueType font and reduced (anti-aliased)."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    big = 2 * size
    bank = np.zeros((count, size, size), np.float32)
    for i in range(count):
        canvas = Image.new("L", (big, big), 0)
        draw = ImageDraw.Draw(canvas)
        for text in rng.choice(_strings(rng), size=rng.integers(2, 5), replace=False):
            font = ImageFont.load_default(size=float(big * rng.uniform(0.035, 0.07)))
            # Near one edge: the top or bottom band, or the left or right margin.
            along, across = rng.uniform(0.02, 0.7), rng.choice([rng.uniform(0.01, 0.12), rng.uniform(0.82, 0.93)])
            x, y = (along, across) if rng.random() < 0.75 else (across * 0.9, along)
            draw.text((int(x * big), int(y * big)), str(text), fill=255, font=font)
        bank[i] = np.asarray(canvas.resize((size, size), Image.Resampling.BOX), np.float32) / 255.0
    return bank


def _filtered(x, kernel):
    import tensorflow as tf

    k = tf.constant(kernel[:, :, None, None], tf.float32)
    return tf.nn.depthwise_conv2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC"), k,
                                  [1, 1, 1, 1], "VALID")


def _on(rows, x, change):
    """x with change(x[rows], row numbers) in place of the rows where `rows` (a boolean per image) holds."""
    import tensorflow as tf

    index = tf.where(rows)
    # No rows: x as it is (a convolution of an empty batch comes back with the wrong shape).
    return tf.cond(tf.size(index) > 0, lambda: tf.tensor_scatter_nd_update(
        x, index, change(tf.gather_nd(x, index), index[:, 0])), lambda: x)


def acquisition_augmentation(images, seed, bank, prep: Preprocessing, strength: float = 1.0,
                             skip: tuple[str, ...] = ()):
    """A batch of (b, size, size, 1) preprocessed uint8 images with random acquisition changes (uint8 out).

    `seed` (two integers) fixes the draw, so a resumed run sees the same batches; `bank` is text_bank's output
    for this size (a tensor); `strength` 0 returns the images unchanged; `skip` names families never applied.
    After an intensity-equalising preprocessing the grey levels are equalised again, and a blank frame stays
    blank: the model meets the same kind of input as at prediction time.
    """
    import tensorflow as tf

    from cxr.data.framing import equalized

    size = images.shape[1]
    n = tf.shape(images)[0]
    u = tf.random.stateless_uniform((n, 13), seed)

    def chance(col, family):
        return tf.cast(u[:, col] < (0.0 if family in skip else CHANCE[family]), tf.float32)[:, None, None, None]

    def column(col):
        return u[:, col][:, None, None, None]

    # A processing curve (a gamma and a window: black and white points) of random strength, drawn per image as a
    # table of the 256 grey levels its uint8 pixels can hold and looked up: the same values as computing it on
    # every pixel, at a fifth of the time.
    levels = tf.range(256, dtype=tf.float32) / 255.0
    gamma = tf.exp((2.0 * u[:, 1:2] - 1.0) * MAX_LOG_GAMMA * strength)
    low, high = u[:, 2:3] * MAX_WINDOW * strength, 1.0 - u[:, 3:4] * MAX_WINDOW * strength
    toned = tf.clip_by_value((tf.pow(levels, gamma) - low) / (high - low), 0.0, 1.0)
    curves = levels + chance(0, "tone")[:, :, 0, 0] * (toned - levels)
    x = tf.gather(curves, tf.cast(images[..., 0], tf.int32), batch_dims=1)[..., None]
    # Sharpening or blur (never both): a 3 x 3 unsharp mask of random gain, or a partial 3 x 3 smoothing. It and the
    # noise are computed only for the images that receive them.
    sharpen = chance(4, "sharpen")
    gain = sharpen * column(5) * MAX_SHARPEN * strength - (1.0 - sharpen) * chance(6, "blur") * column(7) * strength

    def filtered(part, rows):
        return part + tf.gather(gain, rows) * (part - _filtered(part, _SMOOTH))

    x = _on(gain[:, 0, 0, 0] != 0.0, x, filtered)
    # Additive detector noise.
    spread = chance(8, "noise") * column(9) * MAX_NOISE * strength

    def noisy(part, rows):
        noise = tf.random.stateless_normal(tf.shape(part), seed + tf.constant([0, 1], seed.dtype))
        return part + tf.gather(spread, rows) * noise

    x = _on(spread[:, 0, 0, 0] > 0.0, x, noisy)
    # Burned-in annotations, white or light grey, from the bank.
    overlay = tf.gather(bank, tf.cast(u[:, 11] * bank.shape[0], tf.int32) % bank.shape[0])[..., None]
    shade = 0.75 + 0.25 * column(12)
    x = x + chance(10, "text") * strength * overlay * (shade - x)
    x = tf.clip_by_value(x, 0.0, 1.0) * 255.0
    k = frame_px(size) if prep.border == "frame" else 0
    x = x[:, k: size - k, k: size - k]
    if prep.intensity in ("exact", "equalize"):
        x = equalized(x)
    x = tf.pad(x, [[0, 0], [k, k], [k, k], [0, 0]])
    return tf.cast(tf.round(x), images.dtype)
