"""Transfer learning: an ImageNet convolutional base, frozen, with a small dense head.

Grayscale X-rays are repeated into 3 channels and preprocessed as the weights expect, with built-in
layers (no Lambda), so saved models load in safe mode.
"""

import keras
from keras import layers

from cxr.errors import UsageError
from cxr.models.pretrained import load_base_weights
from cxr.models.registry import Built, register

# Caffe-style preprocessing for VGG: BGR channel means subtracted (R = G = B here, so order is moot).
VGG_MEANS = [103.939, 116.779, 123.68]

BASES = {
    "vgg16": (keras.applications.VGG16, lambda: layers.Normalization(mean=VGG_MEANS, variance=[1.0] * 3)),
    "vgg19": (keras.applications.VGG19, lambda: layers.Normalization(mean=VGG_MEANS, variance=[1.0] * 3)),
    "xception": (keras.applications.Xception, lambda: layers.Rescaling(1 / 127.5, offset=-1.0)),
}


def dense_head(feature_shape, name: str) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input(feature_shape, name="features"),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.3),
            layers.Dense(1, activation="sigmoid", dtype="float32", name="pneumonia"),
        ],
        name=f"{name}_head",
    )


def transfer_model(name: str, size: int, weights: str | None = None, pretrained: bool = True) -> Built:
    application, preprocessing = BASES[name]
    smallest = 71 if name == "xception" else 32  # keras.applications' own limits
    if size < smallest:
        raise UsageError(f"{name} needs --size of at least {smallest} (got {size})")
    base = application(weights=None, include_top=False, input_shape=(size, size, 3))
    note = load_base_weights(name, base, weights) if pretrained else "random weights (testing only)"
    base.trainable = False
    image = keras.Input((size, size, 1), name="image")
    x = layers.Concatenate(name="gray_to_rgb")([image, image, image])
    x = preprocessing()(x)
    feature_map = base(x, training=False)
    features = keras.Model(image, feature_map, name=f"{name}_features")
    head = dense_head(feature_map.shape[1:], name)
    model = keras.Model(image, head(feature_map), name=f"{name}_transfer")
    return Built(model, features=features, head=head, weights_note=note)


def _register(name):
    register(name)(lambda size=128, weights=None, pretrained=True, **_: transfer_model(name, size, weights, pretrained))


for _name in BASES:
    _register(_name)
