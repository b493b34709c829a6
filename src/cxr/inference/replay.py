"""A cxr model replayed layer by layer, holding on to two of its tensors: the output of an intermediate layer
with a fine grid (what the evidence maps explain) and the input of the final Dense layer (the penultimate
features, which the feature guard and the site check compare between batches).

Gradients must flow from the output to the very tensor held, so the model is not wrapped in a two-output
keras.Model (a nested base's inner tensors are not connected to the outer graph: "Graph disconnected"). A
nested base (a pretrained network) runs as one two-output model (held layer, base output) called in the same
pass; the layers around it, and every layer of a model without one, are replayed one by one (every cxr model
is a chain outside its base).
"""

import keras
import tensorflow as tf

CONV_TYPES = (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D)
# The held layer's grid must have at least this many cells a side: the last convolution of VGG16 at 64 px is a
# 4 x 4 grid, which can say "bottom quarter" and little else.
MIN_GRID = 8


def grid_of(layer) -> int:
    return int(layer.output.shape[1])


def held_layer(model: keras.Model):
    """The last convolution whose grid has at least MIN_GRID cells a side (the largest grid where none has). In
    a network whose paths join (Xception and MobileNetV2 add them, DenseNet121 concatenates them) a convolution
    inside a block sees only one of the paths to the decision, so there it is the last join (`Add`, else
    `Concatenate`)."""
    convs = [layer for layer in model.layers if isinstance(layer, CONV_TYPES)]
    if not convs:
        raise ValueError(f"model {model.name} has no convolution layer to explain")
    sums = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
    concatenations = [layer for layer in model.layers if isinstance(layer, keras.layers.Concatenate)]
    candidates = sums or concatenations or convs
    fine = [layer for layer in candidates if grid_of(layer) >= MIN_GRID]
    return fine[-1] if fine else max(candidates, key=grid_of)


class Replay:
    def __init__(self, model: keras.Model):
        self.model = model
        nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
        # The base is the nested model that holds convolutions (the head holds none).
        base = next((m for m in nested if any(isinstance(x, CONV_TYPES) for x in m.layers)), None)
        self.held = held_layer(base or model)
        self.steps = []  # (callable, is_the_base: returns the held output and its own)
        for layer in model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            if layer is base:
                self.steps.append((keras.Model(base.inputs, [self.held.output, base.output]), True))
            elif isinstance(layer, keras.Model):  # the dense head: replay its layers one by one
                self.steps += [(x, False) for x in layer.layers if not isinstance(x, keras.layers.InputLayer)]
            else:
                self.steps.append((layer, False))
        last = self.steps[-1][0]  # sigmoid, or linear in the inference form of a run that outputs logits
        if not (isinstance(last, keras.layers.Dense) and last.activation in (keras.activations.sigmoid,
                                                                             keras.activations.linear)):
            raise ValueError(f"model {model.name} does not end in a Dense layer giving the probability (sigmoid) or "
                             "its logit (linear)")

    def run(self, x):
        """(held layer's output, penultimate features, logit of pneumonia) in one pass a gradient tape sees.

        The logit, not the probability: a confident model's sigmoid saturates to exactly 1.0 in float32,
        and its gradient to exactly zero.
        """
        *body, (dense, _) = self.steps
        held, h = self._through(body, x)
        logit = tf.matmul(tf.cast(h, dense.kernel.dtype), dense.kernel) + dense.bias
        return held, h, logit

    def through_base(self, x):
        """(held layer's output, the pretrained base's output): the pass up to the end of the nested base."""
        return self._through(self.steps[: self._base_index() + 1], x)

    def penultimate_from_base(self, base_output):
        """The penultimate features from the base's output: the layers after the base, but the last."""
        return self._through(self.steps[self._base_index() + 1: -1], base_output)[1]

    def _base_index(self) -> int:
        index = next((i for i, (_, is_base) in enumerate(self.steps) if is_base), None)
        if index is None:
            raise ValueError(f"model {self.model.name} has no pretrained base")
        return index

    def _through(self, steps, h):
        """(held layer's output where `steps` reach it, else None; the output of the last step)."""
        held = None
        for step, is_base in steps:
            if is_base:
                held, h = step(h, training=False)
            elif isinstance(step, keras.layers.Concatenate):  # grayscale fanned out to 3 channels
                h = step([h, h, h])
            else:
                h = step(h, training=False)
            if step is self.held:
                held = h
        return held, h
