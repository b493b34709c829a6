"""The seed's from-scratch CNN, and the same CNN with on-the-fly data augmentation."""

import keras
from keras import layers

from cxr.models.registry import Built, register


def augmentation() -> list[keras.layers.Layer]:
    """Small, anatomy-preserving changes, active only while training.

    No horizontal flip: in a chest X-ray the heart sits on the left and the laterality marker reads one
    way, so a mirrored film is an image the model never meets in practice (situs inversus is rare);
    flipping teaches it to ignore real anatomy for nothing.
    """
    return [
        layers.RandomRotation(0.03, fill_mode="constant"),  # about +-10 degrees
        layers.RandomTranslation(0.05, 0.05, fill_mode="constant"),
        layers.RandomZoom(0.1, fill_mode="constant"),
        layers.RandomBrightness(0.1, value_range=(0, 255)),
        layers.RandomContrast(0.1, value_range=(0, 255)),
    ]


def seed_cnn(size: int, augment: bool = False, name: str = "cnn") -> keras.Model:
    """Three convolution blocks (32, 64, 128 filters) and three dense layers, as in the seed project."""
    return keras.Sequential(
        [
            keras.Input((size, size, 1), name="image"),
            *(augmentation() if augment else []),
            layers.Rescaling(1 / 255.0),
            layers.Conv2D(32, 3, activation="relu", name="conv1"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu", name="conv2"),
            layers.MaxPooling2D(),
            layers.Conv2D(128, 3, activation="relu", name="conv3"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(128, activation="relu"),
            layers.Dense(64, activation="relu"),
            layers.Dense(1, activation="sigmoid", dtype="float32", name="pneumonia"),
        ],
        name=name,
    )


@register("cnn")
def cnn(size: int = 128, **_) -> Built:
    return Built(seed_cnn(size, augment=False, name="cnn"))


@register("cnn_aug")
def cnn_aug(size: int = 128, **_) -> Built:
    return Built(seed_cnn(size, augment=True, name="cnn_aug"))
