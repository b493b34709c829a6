"""VGG16 from ImageNet weights, fine-tuned end to end (all layers), with augmentation that breaks the
acquisition cues of the training batch.

The frozen-base models read ImageNet features that were never taught what matters in a radiograph, and
their heads latch onto whatever separates the training batch (borders, exposure, the squash distortion
of wide originals). Training every layer, with label-free variation in exactly those cues, is what the
strong published baselines on this data do.
"""

import keras
from keras import layers

from cxr.data.preprocess import frame_px
from cxr.errors import UsageError
from cxr.models.pretrained import load_base_weights
from cxr.models.registry import Built, register
from cxr.models.transfer import VGG_MEANS


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


def finetuned_vgg16(size: int, weights: str | None = None, pretrained: bool = True) -> Built:
    if size < 32:
        raise UsageError(f"vgg16_e2e needs --size of at least 32 (got {size})")
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(size, size, 3))
    note = load_base_weights("vgg16", base, weights) if pretrained else "random weights (testing only)"
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
    # Caffe preprocessing (0..255 minus the ImageNet means) expressed on 0..1 inputs.
    x = layers.Normalization(mean=[m / 255.0 for m in VGG_MEANS], variance=[1 / 255.0**2] * 3)(x)
    x = base(x)
    x = layers.GlobalAveragePooling2D()(x)  # no position-specific weights to latch onto borders
    x = layers.Dropout(0.3)(x)
    # Zero-initialised: training starts at P = 0.5 and the pretrained layers see no random-head gradients.
    out = layers.Dense(1, activation="sigmoid", dtype="float32", kernel_initializer="zeros", name="pneumonia")(x)
    return Built(keras.Model(image, out, name="vgg16_e2e"), weights_note=f"{note}; all layers fine-tuned")


@register("vgg16_e2e")
def vgg16_e2e(size: int = 128, weights: str | None = None, pretrained: bool = True, **_) -> Built:
    return finetuned_vgg16(size, weights, pretrained)
