"""Class-activation maps: where in the X-ray the model found evidence for the class it predicted.

HiResCAM (Draelos & Carin 2020): the gradient times the activation at every position of the last
convolution, summed over channels. Plain Grad-CAM averages the gradient over positions first, which for a
Flatten head mixes the evidence of all positions into one weight per channel; on a confident model that
weighted sum is negative everywhere and the map comes out blank. HiResCAM keeps each position's own
evidence, and for a linear head it is exactly each position's share of the logit.

The map explains the predicted class: evidence for PNEUMONIA when the call is PNEUMONIA, for NORMAL when
it is NORMAL (the negative logit). A map with no positive evidence anywhere is reported as blank, never
drawn as if it showed something.

Works on every cxr model, including a frozen pretrained base nested inside the model, where the naive
`keras.Model(model.inputs, inner_layer.output)` fails with "Graph disconnected": the nested base gets its
own two-output sub-model, and the outer chain of layers is replayed around it.
"""

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cxr import CLASSES

CONV_TYPES = (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D)


def _last_conv(model: keras.Model):
    convs = [layer for layer in model.layers if isinstance(layer, CONV_TYPES)]
    if not convs:
        raise ValueError(f"model {model.name} has no convolution layer to explain")
    return convs[-1]


class HiResCam:
    """Replays the model as a chain of layers, keeping hold of the last convolution's output.

    Gradients must flow from the output to the very tensor we hold, so the model is not wrapped in a
    two-output keras.Model (whose outputs the tape does not connect); every cxr model is a chain from
    its last convolution on, which makes replaying exact.
    """

    def __init__(self, model: keras.Model):
        self.model = model
        nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
        # The base is the nested model that holds convolutions (the head holds none).
        base = next((m for m in nested if any(isinstance(x, CONV_TYPES) for x in m.layers)), None)
        self.steps = []  # (callable, is_the_conv_output)
        for layer in model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            if layer is base:
                conv = _last_conv(base)
                self.steps.append((keras.Model(base.inputs, conv.output), True))
                tail = base.layers[base.layers.index(conv) + 1:]
                self.steps += [(x, False) for x in tail if not isinstance(x, keras.layers.InputLayer)]
            elif isinstance(layer, keras.Model):  # the dense head: replay its layers one by one
                self.steps += [(x, False) for x in layer.layers if not isinstance(x, keras.layers.InputLayer)]
            else:
                self.steps.append((layer, base is None and layer is _last_conv(model)))
        last = self.steps[-1][0]
        if not (isinstance(last, keras.layers.Dense) and last.activation is keras.activations.sigmoid):
            raise ValueError(f"model {model.name} does not end in a sigmoid Dense layer")

    def _forward(self, x):
        """(last conv maps, logit of pneumonia) in one pass that the gradient tape sees.

        The logit, not the probability: a confident model's sigmoid saturates to exactly 1.0 in float32,
        and its gradient to exactly zero.
        """
        maps, h = None, x
        *body, (dense, _) = self.steps
        for step, is_conv in body:
            if isinstance(step, keras.layers.Concatenate):  # grayscale fanned out to 3 channels
                h = step([h, h, h])
            else:
                h = step(h, training=False)
            if is_conv:
                maps = h
        logit = tf.matmul(tf.cast(h, dense.kernel.dtype), dense.kernel) + dense.bias
        return maps, logit

    def explain(self, images: np.ndarray, threshold: float = 0.5, called=None) -> "Explanation":
        """Maps of the predicted class for (n, size, size[, 1]) images in 0..255 at this decision threshold.

        `called` (n booleans: PNEUMONIA called) overrides this model's own call: the serving path calls with
        calibrated probabilities, and an ensemble is explained through one member, whose raw probability
        may fall on the other side of the threshold.
        """
        size = images.shape[1]
        x = tf.convert_to_tensor(np.asarray(images, np.float32).reshape(-1, size, size, 1))
        with tf.GradientTape() as tape:
            maps, logits = self._forward(x)
            logits = tf.cast(tf.reshape(logits, [-1]), tf.float32)
            probs = tf.sigmoid(logits)
            # +logit is evidence for PNEUMONIA, -logit for NORMAL: explain whichever was called.
            pneumonia = probs >= threshold if called is None else tf.constant(np.asarray(called, bool).reshape(-1))
            sign = tf.where(pneumonia, 1.0, -1.0)
            score = tf.reduce_sum(sign * logits)
        grads = tape.gradient(score, maps)
        cam = tf.nn.relu(tf.reduce_sum(tf.cast(grads * maps, tf.float32), axis=-1))[..., None]
        cam = tf.image.resize(cam, (size, size), method="bilinear")[..., 0].numpy()
        peak = cam.reshape(len(cam), -1).max(axis=1)
        blank = ~(peak > 0)
        cam = np.where(blank[:, None, None], 0.0, cam / np.maximum(peak, 1e-12)[:, None, None])
        return Explanation(cam.astype(np.float32), probs.numpy(), (sign.numpy() > 0).astype(int), blank)


@dataclass
class Explanation:
    heatmaps: np.ndarray  # (n, size, size) in 0..1; all zeros where blank
    probs: np.ndarray  # (n,) P(pneumonia)
    explained: np.ndarray  # (n,) index into CLASSES of the class each map shows evidence for
    blank: np.ndarray  # (n,) True where the model found no positive evidence anywhere

    def caption(self, i: int) -> str:
        name = CLASSES[int(self.explained[i])]
        return f"no positive evidence for {name} found" if self.blank[i] else f"evidence for {name}"


def overlay_png(image: np.ndarray, heatmap: np.ndarray, path: Path, title: str, caption: str, blank: bool) -> Path:
    """The X-ray and the X-ray with the heatmap over it, side by side; a blank map says so instead."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cxr.figures import save

    fig, axes = plt.subplots(1, 2, figsize=(7, 3.8))
    for ax in axes:
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.axis("off")
    if blank:
        axes[1].text(0.5, 0.5, caption, transform=axes[1].transAxes, ha="center", va="center", wrap=True,
                     color="white", backgroundcolor="black", fontsize=9)
    else:
        shown = axes[1].imshow(heatmap, cmap="jet", alpha=0.4, vmin=0, vmax=1,
                               extent=(-0.5, image.shape[1] - 0.5, image.shape[0] - 0.5, -0.5))
        fig.colorbar(shown, ax=axes[1], fraction=0.046, label=caption)
    axes[0].set_title("X-ray", fontsize=10)
    axes[1].set_title("HiResCAM", fontsize=10)
    fig.suptitle(title, fontsize=10)
    return save(fig, Path(path))


def heatmap_rgba(heatmap: np.ndarray, size: int) -> np.ndarray:
    """A colour heatmap with its own transparency, for drawing over an image (web page)."""
    import matplotlib

    resized = tf.image.resize(heatmap[..., None], (size, size)).numpy()[..., 0]
    rgba = matplotlib.colormaps["jet"](resized)
    rgba[..., 3] = 0.55 * np.clip(resized, 0, 1)
    return (rgba * 255).astype(np.uint8)
