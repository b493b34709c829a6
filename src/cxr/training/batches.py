"""Training batches: shuffled as a function of (seed, epoch) alone, with the run's augmentations applied in
TensorFlow (the targeted framing, the acquisition changes), so a resumed run sees exactly what the killed one
would have seen."""

from pathlib import Path

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from cxr.data.acquisition_augment import TRAIN_FAMILIES, acquisition_augmentation, text_bank
from cxr.data.cache import load_images
from cxr.data.framing import FINE, framing_augmentation
from cxr.errors import RunError, UsageError
from cxr.runs.settings import TrainConfig


def training_batches(x, y, cfg: TrainConfig, first_epoch: int, epochs: int, x_fine=None):
    """Shuffled batches whose order is a function of (seed, epoch) alone, for epochs first_epoch..epochs-1.

    A run resumed at epoch k then sees exactly the batches the killed run would have seen, so it ends with
    the same model. With balanced class weights, each example carries its class's weight.
    """
    import tensorflow as tf

    n, framing = len(y), cfg.framing == "targeted"
    weights = np.ones(n, np.float32)
    if cfg.class_weight == "balanced":
        weights = compute_class_weight("balanced", classes=np.array([0, 1]), y=y).astype(np.float32)[y]
    x, y, weights = tf.constant(x), tf.constant(y), tf.constant(weights)
    fine = None if x_fine is None else tf.constant(x_fine)
    acquisition = cfg.acquisition == "random" and x.shape.rank == 4  # images, not cached features
    bank = tf.constant(text_bank(x.shape[1], cfg.seed)) if acquisition else None
    skipped = acquisition_families_skipped(cfg)

    def epoch_order(epoch):
        return tf.random.experimental.stateless_shuffle(tf.range(n), seed=tf.stack([cfg.seed, epoch]))

    def epoch_batches(epoch):  # batched per epoch: the last may be short
        epoch = tf.cast(epoch, tf.int32)
        numbered = tf.data.Dataset.from_tensor_slices(epoch_order(epoch)).batch(cfg.batch_size).enumerate()
        return numbered.map(lambda i, idx: (epoch * 100_003 + tf.cast(i, tf.int32), idx))

    def gather(batch_id, idx):
        images, labels = tf.gather(x, idx), tf.gather(y, idx)
        if framing:  # a draw fixed by (seed, epoch, batch): resuming repeats it exactly
            images = framing_augmentation(images, labels, tf.stack([cfg.seed, batch_id]), cfg.preprocessing,
                                          None if fine is None else tf.gather(fine, idx))
        if acquisition:  # its own draw: the framing's stays what it was
            images = acquisition_augmentation(images, tf.stack([cfg.seed + 1, batch_id]), bank, cfg.preprocessing,
                                              skip=skipped)
        return images, labels, tf.gather(weights, idx)

    batches = tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_batches)
    # Fixed parallelism, no autotuning: a gather from memory needs no tuning, and after a few minutes the
    # autotuner's thread sleeps up to a minute between rounds, which the end of `fit` waited for (30-60 s).
    options = tf.data.Options()
    options.autotune.enabled = False
    return batches.map(gather, num_parallel_calls=2).prefetch(2).with_options(options)


def acquisition_families_skipped(cfg: TrainConfig) -> tuple[str, ...]:
    skipped = tuple(f.strip() for f in cfg.acquisition_skip.split(",") if f.strip())
    unknown = set(skipped) - set(TRAIN_FAMILIES)
    if unknown:
        raise UsageError(f"--acquisition-skip: unknown families {sorted(unknown)}; known: {', '.join(TRAIN_FAMILIES)}")
    return skipped


def fine_training_images(train_part, cfg: TrainConfig) -> np.ndarray | None:
    """The training images at framing.FINE times the size, for sharp framing crops (None without framing)."""
    if cfg.framing == "none":
        return None
    loaded = load_images(train_part.paths, cfg.preprocessing.at_size(FINE * cfg.size))
    if loaded.paths != [Path(p) for p in train_part.paths]:
        raise RunError("the training images could not all be read again at the larger size for framing crops")
    return loaded.images[..., None]


def trained_against(cfg: TrainConfig) -> tuple[str, ...]:
    """The families of change the run's augmentation varies (what RunInfo.trained_against records)."""
    acquisition = [f for f in TRAIN_FAMILIES if f not in acquisition_families_skipped(cfg)]
    return (("framing",) if cfg.framing != "none" else ()) + (tuple(acquisition) if cfg.acquisition == "random" else ())
