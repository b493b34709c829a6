"""Frozen-base features, computed once per image set and cached on disk.

A frozen pretrained base without augmentation maps an image to the same features every epoch, so the
head trains on stored features instead of running the base (99% of the compute) every epoch. The same pass
keeps the channel means of the layer inside the base that the evidence maps explain: the feature guard reads
them, and without them it would run the base over the training split once more.
"""

import hashlib
import logging
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from cxr.data.cache import SUFFIX, cache_root
from cxr.files import load_array, save_array
from cxr.inference.replay import Replay

log = logging.getLogger(__name__)
BATCH = 32


@dataclass(frozen=True)
class BaseOutputs:
    features: np.ndarray  # (n, *base output shape): what the head trains on
    held_means: np.ndarray  # (n, channels): the channel means of the explained layer (the guard's `intermediate`)


def cached_features(built, images: np.ndarray, cfg) -> BaseOutputs:
    """The frozen base's outputs for `images` (a Built transfer model), from the cache when the same images
    were seen. Stored in float16 (post-ReLU values fit well; half the disk), features and means side by side in
    one file, and returned in float32: the same values whether cached or fresh."""
    digest = hashlib.sha256(images.tobytes()).hexdigest()[:24]
    note = hashlib.sha256(built.weights_note.encode()).hexdigest()[:8]
    policy = keras.mixed_precision.global_policy().name
    path = cache_root() / "features" / f"{cfg.model}-{cfg.size}px-{policy}-{note}-held-{digest}{SUFFIX}"
    shape = tuple(built.features.output_shape[1:])
    width = int(np.prod(shape))
    stored = load_array(path)
    if stored is None or stored.ndim != 2 or stored.shape[0] != len(images) or stored.shape[1] <= width:
        log.info("computing %s features for %d images (once; cached at %s)", cfg.model, len(images), path)
        stored = _base_pass(built.model, images, width)
        save_array(path, stored)
    stored = stored.astype(np.float32)
    return BaseOutputs(stored[:, :width].reshape(-1, *shape), stored[:, width:])


def _base_pass(model: keras.Model, images: np.ndarray, width: int) -> np.ndarray:
    """(n, width + channels) float16: each image's base output, flattened, then its held layer's channel means."""
    replay = Replay(model)

    @tf.function(input_signature=[tf.TensorSpec((None, *images.shape[1:]), tf.float32)])
    def outputs(x):
        held, base = replay.through_base(x)
        means = tf.reduce_mean(tf.cast(held, tf.float32), axis=(1, 2))
        return tf.concat([tf.reshape(tf.cast(base, tf.float32), (-1, width)), means], axis=1)

    return np.concatenate([outputs(images[i: i + BATCH].astype(np.float32)).numpy().astype(np.float16)
                           for i in range(0, len(images), BATCH)])
