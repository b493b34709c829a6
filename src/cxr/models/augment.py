"""Augmentation for the from-scratch CNN: every geometric change in one resampling pass.

Keras' RandomRotation, RandomTranslation and RandomZoom each resample the whole batch (about 0.45 s per
epoch each at 128 px on 2 cores); composing them into one affine matrix per image resamples once.
"""

import math

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="cxr")
class RandomAffine(layers.Layer):
    """Random rotation, shift and zoom of each image, as one affine transform. Inactive outside training.

    `aspect` also scales the width independently of the height (squashed wide originals look like narrower
    chests). It is off by default: at +-25% in `cnn_aug` it raised validation loss from 0.07 to 0.09 on the
    shared data, and the robust model varies height and width on its own (models/finetune.py).
    """

    def __init__(self, rotation=10.0, shift=0.05, zoom=0.1, aspect=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rotation, self.shift, self.zoom, self.aspect, self.seed = rotation, shift, zoom, aspect, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _uniform(self, n, limit):
        return keras.random.uniform((n,), -limit, limit, seed=self.seed_generator)

    def call(self, images, training=None):
        if not training:
            return images
        n = ops.shape(images)[0]
        height, width = images.shape[1], images.shape[2]
        angle = self._uniform(n, math.radians(self.rotation))
        zoom = 1.0 + self._uniform(n, self.zoom)
        zoom_x, zoom_y = zoom * (1.0 + self._uniform(n, self.aspect)), zoom
        shift_x, shift_y = self._uniform(n, self.shift * width), self._uniform(n, self.shift * height)
        cos, sin = ops.cos(angle), ops.sin(angle)
        # Maps each output pixel to where it is read in the input, about the image centre (Keras' convention).
        a0, a1, b0, b1 = cos * zoom_x, -sin * zoom_y, sin * zoom_x, cos * zoom_y
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        a2 = cx - a0 * cx - a1 * cy + shift_x
        b2 = cy - b0 * cx - b1 * cy + shift_y
        zeros = ops.zeros_like(angle)
        matrix = ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        out = ops.image.affine_transform(ops.cast(images, "float32"), matrix, fill_mode="constant")
        return ops.cast(out, images.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rotation": self.rotation, "shift": self.shift, "zoom": self.zoom,
                "aspect": self.aspect, "seed": self.seed}


def augmentation() -> list[keras.layers.Layer]:
    """Small, anatomy-preserving changes, active only while training: geometry in one pass, then exposure.

    No horizontal flip: in a chest X-ray the heart sits on the left and the laterality marker reads one
    way, so a mirrored film is an image the model never meets in practice (situs inversus is rare);
    flipping teaches it to ignore real anatomy for nothing.
    """
    return [
        RandomAffine(),
        layers.RandomBrightness(0.1, value_range=(0, 255)),
        layers.RandomContrast(0.1, value_range=(0, 255)),
    ]
