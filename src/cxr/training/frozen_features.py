"""Frozen-base features, computed once per image set and cached on disk.

A frozen pretrained base without augmentation maps an image to the same features every epoch, so the
head trains on stored features instead of running the base (99% of the compute) every epoch.
"""

import hashlib
import logging

import keras
import numpy as np

from cxr.data.cache import SUFFIX, cache_root
from cxr.files import load_array, save_array

log = logging.getLogger(__name__)


def cached_features(built, images: np.ndarray, cfg) -> np.ndarray:
    """features(images) for a Built transfer model, from the cache when the same images were seen."""
    digest = hashlib.sha256(images.tobytes()).hexdigest()[:24]
    note = hashlib.sha256(built.weights_note.encode()).hexdigest()[:8]
    policy = keras.mixed_precision.global_policy().name
    path = cache_root() / "features" / f"{cfg.model}-{cfg.size}px-{policy}-{note}-{digest}{SUFFIX}"
    cached = load_array(path)
    if cached is not None:
        return cached.astype(np.float32)
    log.info("computing %s features for %d images (once; cached at %s)", cfg.model, len(images), path)
    half = built.features.predict(images, batch_size=32, verbose=2).astype(np.float16)  # post-ReLU: fits well
    save_array(path, half)  # half the disk
    return half.astype(np.float32)  # the same values whether cached or fresh
