"""Models by name: `build(name, size)` returns a Built model (timm-style registry).

Every model takes (size, size, 1) grayscale pixels in 0..255 and outputs P(pneumonia). Scaling to what a
network expects lives inside the model as built-in Keras layers, so a saved model needs no extra code to
run and loads in Keras safe mode.
"""

import keras

from cxr.models import cnn, finetune, transfer  # noqa: F401  (importing registers the builders)
from cxr.models.registry import BUILDERS, Built

__all__ = ["Built", "build", "copy_in_precision", "names"]


def names() -> list[str]:
    return sorted(BUILDERS)


def build(name: str, size: int = 128, **options) -> Built:
    if name not in BUILDERS:
        raise SystemExit(f"unknown model {name!r}; choose one of: {', '.join(sorted(BUILDERS))}")
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
