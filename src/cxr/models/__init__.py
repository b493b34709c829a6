"""Model registry: `build(name, size)` returns a Built model; builders register themselves by name.

Every model takes (size, size, 1) grayscale pixels in 0..255 and outputs P(pneumonia). Preprocessing
lives inside the model as built-in Keras layers, so a saved model needs no extra code to run and loads
in Keras safe mode.
"""

from collections.abc import Callable
from dataclasses import dataclass

import keras

_REGISTRY: dict[str, Callable[..., "Built"]] = {}


@dataclass
class Built:
    model: keras.Model  # the whole model, images -> P(pneumonia)
    features: keras.Model | None = None  # frozen pretrained part: images -> feature map (transfer models)
    head: keras.Model | None = None  # trainable part on top of `features`
    weights_note: str = ""  # where pretrained weights came from, for reports

    @property
    def frozen_base(self) -> bool:
        return self.features is not None


def register(name: str):
    def add(builder):
        _REGISTRY[name] = builder
        return builder

    return add


def names() -> list[str]:
    _load_builders()
    return sorted(_REGISTRY)


def build(name: str, size: int = 128, **options) -> Built:
    _load_builders()
    if name not in _REGISTRY:
        raise SystemExit(f"unknown model {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](size=size, **options)


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


def _load_builders():
    from cxr.models import cnn, transfer  # noqa: F401  (importing registers them)
