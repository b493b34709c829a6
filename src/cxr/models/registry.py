"""The registry itself: what a builder returns, and the table of builders by name."""

from collections.abc import Callable
from dataclasses import dataclass

import keras

BUILDERS: dict[str, Callable[..., "Built"]] = {}


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
        BUILDERS[name] = builder
        return builder

    return add
