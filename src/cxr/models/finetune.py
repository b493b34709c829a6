"""ImageNet networks (VGG16, DenseNet121, MobileNetV2) fine-tuned end to end (all layers), with augmentation
that breaks the acquisition cues of the training batch.

The frozen-base models read ImageNet features that were never taught what matters in a radiograph, and
their heads latch onto whatever separates the training batch (borders, exposure, the squash distortion
of wide originals). Training every layer, with label-free variation in exactly those cues, is what the
strong published baselines on this data do.
"""

import keras
from keras import layers

from cxr.data.preprocess import frame_px
from cxr.models.registry import Built, register
from cxr.models.transfer import pretrained_base


def robust_augmentation() -> list[keras.layers.Layer]:
    """Random changes of what differs between acquisitions, active only while training.

    Height and width are scaled independently (zoom in up to 30%, out up to 15%), so neither the apparent
    size of the chest in the frame nor the squash distortion of a wide or narrow original carries a label
    (`cxr stress` showed a model trained with +-10% zoom lose 0.05 ROC AUC and most of its specificity
    when 10% of each border was cropped); shift and a small rotation vary framing; blur, contrast and
    noise vary the detector. No horizontal flip: the heart sits on the left.
    """
    return [
        layers.RandomZoom(height_factor=(-0.3, 0.15), width_factor=(-0.3, 0.15), fill_mode="constant"),
        layers.RandomTranslation(0.06, 0.06, fill_mode="constant"),
        layers.RandomRotation(0.02, fill_mode="constant"),  # about +-7 degrees
        layers.RandomGaussianBlur(factor=0.5, kernel_size=3, sigma=1.0, value_range=(0, 255)),
        layers.RandomContrast(0.15, value_range=(0, 255)),
    ]


def finetuned(name: str, size: int, weights: str | None = None, pretrained: bool = True) -> Built:
    """The ImageNet base `name` with a one-unit head, every layer trained."""
    kind = f"{name}_e2e"
    base, preprocessing, note = pretrained_base(name, size, weights, pretrained, kind)
    image = keras.Input((size, size, 1), name="image")
    x = image
    for layer in robust_augmentation():
        x = layer(x)
    # Blank the outer frame again after augmentation: zooming in would otherwise push the blank frame of
    # the preprocessing out of view, and the model would meet at test time (a tightly framed X-ray, frame
    # intact) what it never saw in training.
    k = frame_px(size)
    x = layers.ZeroPadding2D(k)(layers.Cropping2D(k)(x))
    x = layers.Rescaling(1 / 255.0)(x)
    x = layers.GaussianNoise(0.015)(x)  # detector noise, about 4 grey levels
    x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    x = preprocessing(1.0)(x)
    # Batch normalisation stays frozen, in inference mode (Keras runs a non-trainable one so): its ImageNet
    # statistics are kept, where batches of 32 augmented X-rays would replace them with noisy ones (the swings
    # seen when Xception was fine-tuned end to end). Every other layer trains.
    for layer in base.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
    x = base(x)
    x = layers.GlobalAveragePooling2D()(x)  # no position-specific weights to latch onto borders
    x = layers.Dropout(0.3)(x)
    # Zero-initialised: training starts at P = 0.5 and the pretrained layers see no random-head gradients.
    out = layers.Dense(1, activation="sigmoid", dtype="float32", kernel_initializer="zeros", name="pneumonia")(x)
    return Built(keras.Model(image, out, name=kind), weights_note=f"{note}; all layers fine-tuned")


def _register(name: str) -> None:
    register(f"{name}_e2e")(lambda size=128, weights=None, pretrained=True, **_: finetuned(name, size, weights,
                                                                                           pretrained))


for _name in ("vgg16", "densenet121", "mobilenetv2"):
    _register(_name)
