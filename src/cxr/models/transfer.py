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
TORCH_MEAN, TORCH_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # DenseNet's ImageNet statistics


def caffe(top: float) -> layers.Layer:
    """VGG's preprocessing for inputs in 0..top: 0..255 minus the ImageNet means."""
    return layers.Normalization(mean=[m * top / 255 for m in VGG_MEANS], variance=[(top / 255) ** 2] * 3)


def torch_style(top: float) -> layers.Layer:
    """DenseNet's: 0..1, then the ImageNet mean and standard deviation of each channel."""
    return layers.Normalization(mean=[m * top for m in TORCH_MEAN], variance=[(s * top) ** 2 for s in TORCH_STD])


def tf_style(top: float) -> layers.Layer:
    """Xception's and MobileNetV2's: -1..1."""
    return layers.Rescaling(2 / top, offset=-1.0)


# name: (keras.applications builder, preprocessing for inputs in 0..top, smallest input side it accepts)
BASES = {
    "vgg16": (keras.applications.VGG16, caffe, 32),
    "vgg19": (keras.applications.VGG19, caffe, 32),
    "xception": (keras.applications.Xception, tf_style, 71),
    "densenet121": (keras.applications.DenseNet121, torch_style, 32),
    "mobilenetv2": (keras.applications.MobileNetV2, tf_style, 32),
}


def pretrained_base(name: str, size: int, weights: str | None, pretrained: bool, kind: str):
    """(keras.applications base with ImageNet weights, its preprocessing, where the weights came from)."""
    application, preprocessing, smallest = BASES[name]
    if size < smallest:
        raise UsageError(f"{kind} needs --size of at least {smallest} (got {size})")
    base = application(weights=None, include_top=False, input_shape=(size, size, 3))
    note = load_base_weights(name, base, weights) if pretrained else "random weights (testing only)"
    return base, preprocessing, note


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
    base, preprocessing, note = pretrained_base(name, size, weights, pretrained, name)
    base.trainable = False
    image = keras.Input((size, size, 1), name="image")
    x = layers.Concatenate(name="gray_to_rgb")([image, image, image])
    x = preprocessing(255.0)(x)
    feature_map = base(x, training=False)
    features = keras.Model(image, feature_map, name=f"{name}_features")
    head = dense_head(feature_map.shape[1:], name)
    model = keras.Model(image, head(feature_map), name=f"{name}_transfer")
    return Built(model, features=features, head=head, weights_note=note)


def _register(name):
    register(name)(lambda size=128, weights=None, pretrained=True, **_: transfer_model(name, size, weights, pretrained))


for _name in BASES:
    _register(_name)
