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

CUSTOM_OBJECTS = {keras.saving.get_registered_name(layer): layer for layer in (RandomAffine,)}
TRAINING_ONLY_LAYERS = (RandomAffine, layers.RandomZoom, layers.RandomTranslation, layers.RandomRotation,
                        layers.RandomGaussianBlur, layers.RandomContrast, layers.RandomBrightness,
                        layers.GaussianNoise, layers.Dropout)
