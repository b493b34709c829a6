"""cxr's own Keras layers, under the names they are saved with, and every layer that acts only in training.

Every model load passes CUSTOM_OBJECTS in (cxr.runs.folder.load_keras_model), so a saved model that uses one of
cxr's layers loads in a fresh process without relying on what that process happened to import before.
The ONNX export swaps TRAINING_ONLY_LAYERS (augmentation, noise, dropout: the identity at inference) for
Identity. A new custom or training-only layer must be listed here: the round trip of every model kind
fails otherwise.
"""

import keras
from keras import layers

from cxr.models.augment import RandomAffine


@keras.saving.register_keras_serializable(package="cxr")
class FoldedAway(layers.Layer):
    """Where a batch normalisation was folded into the convolution before it (cxr.models.for_inference): its
    input, unchanged. It takes the batch normalisation's call arguments (a mask among them)."""

    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


CUSTOM_OBJECTS = {keras.saving.get_registered_name(layer): layer for layer in (RandomAffine, FoldedAway)}
TRAINING_ONLY_LAYERS = (RandomAffine, layers.RandomZoom, layers.RandomTranslation, layers.RandomRotation,
                        layers.RandomGaussianBlur, layers.RandomContrast, layers.RandomBrightness,
                        layers.GaussianNoise, layers.Dropout)
