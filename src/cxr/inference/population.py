"""Features of a frozen ImageNet network, for the guard's question "is this X-ray of the population the run was
trained on?".

A network trained on one batch keeps what tells its two classes apart and loses much of the rest: on the
model's own features the guard flagged 11% of adult chest X-rays of two other hospitals (`adults_dev`), as
ordinary to a pediatric pneumonia model as its own validation split. A frozen ImageNet network has learned
nothing from the batch and still describes it: the mean and standard deviation of each channel of MobileNetV2's
last feature map, scored by their Mahalanobis distance (cxr.inference.feature_guard). Screened on validation
(docs/trust.md): MobileNetV2 flagged more adults than DenseNet121 at a fourth of its cost (0.2 GFLOPs an X-ray
at 128 px), and its last layer alone far fewer X-rays of the training batch under another processing (CLAHE,
sharpening, burned-in text) than its earlier layers, which see texture before anatomy.

The training and validation splits' features are cached on disk by content, so runs that share a
preprocessing compute them once.
"""

import functools
import hashlib
import logging

import numpy as np

from cxr.data.cache import SUFFIX, cache_root
from cxr.files import load_array, save_array
from cxr.inference.remembered import Remembered

log = logging.getLogger(__name__)

NETWORK, SIZE = "mobilenetv2", 128  # every run's images are resized to this side for the frozen network
LAYER, CHANNELS = "out_relu", 1280  # the mean and standard deviation of each of its channels
BLOCK = "population"  # its name among the feature guard's blocks
VERSION = 1  # names the cache: changes whenever the features can change
BATCH = 64
_COMPUTED = Remembered(keep=6)  # the steps of one process (cxr's --then) read the same splits


class PopulationFeatures:
    """{BLOCK: (n, 2 x CHANNELS)} for preprocessed (n, size, size[, 1]) uint8 images of any one size."""

    def __init__(self):
        self._graphs = {}

    def _graph(self, size: int):
        if size not in self._graphs:
            import keras
            import tensorflow as tf

            from cxr.models.transfer import pretrained_base

            base, preprocessing, _ = pretrained_base(NETWORK, SIZE, None, True, "the population guard")
            image = keras.Input((size, size, 1))
            x = image if size == SIZE else keras.layers.Resizing(SIZE, SIZE, interpolation="bilinear")(image)
            x = preprocessing(255.0)(keras.layers.Concatenate()([x, x, x]))
            maps = keras.Model(base.input, base.get_layer(LAYER).output)(x)
            model = keras.Model(image, keras.ops.concatenate([keras.ops.mean(maps, axis=(1, 2)),
                                                              keras.ops.std(maps, axis=(1, 2))], axis=1))
            spec = tf.TensorSpec((None, size, size, 1), tf.float32)
            self._graphs[size] = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        return self._graphs[size]

    def __call__(self, images: np.ndarray, recompute: bool = False) -> dict:
        """`recompute`: compute even for pixels seen lately (cxr.inference.remembered)."""
        x = np.asarray(images)
        if not len(x):
            return {BLOCK: np.zeros((0, 2 * CHANNELS), np.float32)}
        x = x.reshape(len(x), x.shape[1], x.shape[2], 1)
        run = self._graph(x.shape[1])
        return _COMPUTED(run, x, lambda: {BLOCK: np.concatenate(
            [run(x[i: i + BATCH].astype(np.float32)).numpy() for i in range(0, len(x), BATCH)])}, recompute)

    def cached(self, images: np.ndarray) -> dict:
        """The same, from the disk cache when these exact images were seen (a training or validation split)."""
        digest = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:24]
        path = cache_root() / "features" / f"population-{NETWORK}-v{VERSION}-{digest}{SUFFIX}"
        stored = load_array(path)
        if stored is None:
            log.info("computing the population guard's features of %d X-rays (once; cached at %s)", len(images), path)
            stored = self(images)[BLOCK].astype(np.float16)  # half the disk; ReLU6 outputs fit float16 well
            save_array(path, stored)
        return {BLOCK: stored.astype(np.float32)}  # the same values whether cached or fresh


@functools.cache
def population_features() -> PopulationFeatures:
    """The process's one frozen network (built on first use)."""
    return PopulationFeatures()

