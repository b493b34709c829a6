"""Models by name: `build(name, size)` returns a Built model (timm-style registry).

Every model takes (size, size, 1) grayscale pixels in 0..255 and outputs P(pneumonia). Scaling to what a
network expects lives inside the model as built-in Keras layers, so a saved model needs no extra code to
run and loads in Keras safe mode.
"""

import keras
import numpy as np

from cxr.errors import UsageError
from cxr.models import cnn, finetune, transfer  # noqa: F401  (importing registers the builders)
from cxr.models.registry import BUILDERS, Built

__all__ = ["Built", "build", "copy_in_precision", "model_flops", "names"]


def names() -> list[str]:
    return sorted(BUILDERS)


def build(name: str, size: int = 128, **options) -> Built:
    if name not in BUILDERS:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(sorted(BUILDERS))}")
    return BUILDERS[name](size=size, **options)


def copy_in_precision(name: str, size: int, model: keras.Model, policy: str) -> keras.Model:
    """The same architecture and weights computing under another dtype policy (float32, mixed_bfloat16)."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        copy = build(name, size, pretrained=False).model
    finally:
        keras.mixed_precision.set_global_policy(previous)
    copy.set_weights(model.get_weights())
    return copy


def model_flops(model: keras.Model) -> int:
    """Floating-point operations for one image through the model (a multiply-add counts as two), counting
    convolutions and dense layers, the layers that carry nearly all of the work."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += model_flops(layer)
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
        elif isinstance(layer, keras.layers.SeparableConv2D):
            kh, kw, cin, _ = layer.depthwise_kernel.shape
            positions = int(np.prod(layer.output.shape[1:3]))
            total += 2 * positions * (kh * kw * cin + cin * layer.filters)
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            total += 2 * int(np.prod(layer.output.shape[1:3])) * kh * kw * cin * cout
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw, cin, mult = layer.kernel.shape
            total += 2 * int(np.prod(layer.output.shape[1:3])) * kh * kw * cin * mult
    return int(total)
