"""Class-activation maps: where in the X-ray the model found evidence for the class it predicted.

HiResCAM (Draelos & Carin 2020): the gradient times the activation at every position of a convolution,
summed over channels. Plain Grad-CAM averages the gradient over positions first, which for a
Flatten head mixes the evidence of all positions into one weight per channel; on a confident model that
weighted sum is negative everywhere and the map comes out blank. HiResCAM keeps each position's own
evidence, and for a linear head it is exactly each position's share of the logit.

The map explains the predicted class: evidence for PNEUMONIA when the call is PNEUMONIA, for NORMAL when
it is NORMAL (the negative logit). A map with no positive evidence anywhere is reported as blank, never
drawn as if it showed something.

The explained layer is the last one whose grid has at least 8 x 8 cells (cxr.inference.replay): a map on a
4 x 4 grid can say "bottom quarter" and little else. Works on every cxr model, including a frozen pretrained
base nested inside the model, through the replay.
"""

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cxr import CLASSES
from cxr.inference.replay import Replay, grid_of
from cxr.models.ensemble import member_view


class HiResCam:
    """HiResCAM of a model, replayed layer by layer (cxr.inference.replay) so that the gradient reaches the
    explained layer's output."""

    def __init__(self, model: keras.Model):
        self.model = model
        self.replay = Replay(model)
        self.layer = self.replay.held
        self.grid = (grid_of(self.layer), int(self.layer.output.shape[2]))
        size = int(model.input_shape[1])
        # One graph for the pass and its gradient: run eagerly, DenseNet121's hundreds of layers cost more in
        # dispatch than in arithmetic.
        self._maps = tf.function(self._maps_and_logits, input_signature=[tf.TensorSpec((None, size, size, 1))])

    @property
    def description(self) -> dict:
        return {"method": "HiResCAM", "layer": self.layer.name, "grid": list(self.grid), "members": []}

    @property
    def title(self) -> str:
        """What a figure says the map is: the method, the layer and its grid."""
        return f"HiResCAM at {self.layer.name} ({self.grid[0]} x {self.grid[1]})"

    def signed(self, images: np.ndarray):
        """(n, size, size) maps of each position's contribution to the PNEUMONIA logit (gradient x activation
        summed over channels, resampled to the input), and the (n,) logits."""
        size = images.shape[1]
        cam, logits = self._maps(np.asarray(images, np.float32).reshape(-1, size, size, 1))
        # Per pixel: each cell's contribution over the pixels it covers, so a map sums to what its cells do
        # whatever the grid (the members of an ensemble have different grids).
        cell_pixels = (size / self.grid[0]) * (size / self.grid[1])
        return cam.numpy() / cell_pixels, logits.numpy()

    def _maps_and_logits(self, x):
        with tf.GradientTape() as tape:
            maps, _, logits = self.replay.run(x)
            score = tf.reduce_sum(tf.cast(logits, tf.float32))  # the images of a batch are independent
        grads = tape.gradient(score, maps)
        cam = tf.reduce_sum(tf.cast(grads * maps, tf.float32), axis=-1)[..., None]
        size = x.shape[1]
        return tf.image.resize(cam, (size, size), method="bilinear")[..., 0], tf.cast(tf.reshape(logits, [-1]),
                                                                                        tf.float32)

    def explain(self, images: np.ndarray, threshold: float = 0.5, called=None) -> "Explanation":
        """Maps of the predicted class for (n, size, size[, 1]) images in 0..255 at this decision threshold.

        `called` (n booleans: PNEUMONIA called) overrides this model's own call: the serving path calls with
        calibrated probabilities, which may fall on the other side of the threshold from the raw ones.
        """
        cam, logits = self.signed(images)
        probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        # +logit is evidence for PNEUMONIA, -logit for NORMAL: explain whichever was called.
        pneumonia = probs >= threshold if called is None else np.asarray(called, bool).reshape(-1)
        sign = np.where(pneumonia, 1.0, -1.0)
        cam = np.maximum(sign[:, None, None] * cam, 0.0)
        peak = cam.reshape(len(cam), -1).max(axis=1)
        blank = ~(peak > 0)
        cam = np.where(blank[:, None, None], 0.0, cam / np.maximum(peak, 1e-12)[:, None, None])
        return Explanation(cam.astype(np.float32), probs, pneumonia.astype(int), blank)


class EnsembleCam(HiResCam):
    """The maps of an ensemble that averages its members' logits: each member's signed map of its own logit,
    taken on the input that member sees (the ensemble's X-ray averaged over blocks where it is smaller) and
    resampled to the ensemble's input, averaged the way the logits are. The map then explains the ensemble's
    decision, not one member's."""

    def __init__(self, members: list[tuple[keras.Model, int]], names: list[str] | None = None):
        self.members = [(HiResCam(model), size) for model, size in members]
        self.names = names or [model.name for model, _ in members]

    @property
    def description(self) -> dict:
        return {"method": "HiResCAM of the mean logit: the members' maps averaged in logit space",
                "layer": None, "grid": [min(cam.grid[0] for cam, _ in self.members)] * 2,
                "members": [{"run": name, **{k: v for k, v in cam.description.items() if k in ("layer", "grid")}}
                            for name, (cam, _) in zip(self.names, self.members)]}

    @property
    def title(self) -> str:
        parts = [f"{name}: {cam.layer.name} ({cam.grid[0]} x {cam.grid[1]})"
                 for name, (cam, _) in zip(self.names, self.members)]
        return "HiResCAM of the mean logit\n" + ", ".join(parts)

    def signed(self, images: np.ndarray):
        size = images.shape[1]
        x = np.asarray(images, np.float32).reshape(-1, size, size, 1)
        maps, logits = [], []
        for cam, member_size in self.members:
            factor = size // member_size
            view = member_view(x, member_size)
            m, logit = cam.signed(view)
            # A member pixel covers factor^2 pixels of the X-ray: per pixel, its share spreads over them.
            maps.append(tf.image.resize(m[..., None], (size, size), method="bilinear")[..., 0].numpy() / factor**2)
            logits.append(logit)
        return np.mean(maps, axis=0), np.mean(logits, axis=0)


@dataclass
class Explanation:
    heatmaps: np.ndarray  # (n, size, size) in 0..1; all zeros where blank
    probs: np.ndarray  # (n,) P(pneumonia)
    explained: np.ndarray  # (n,) index into CLASSES of the class each map shows evidence for
    blank: np.ndarray  # (n,) True where the model found no positive evidence anywhere

    def caption(self, i: int) -> str:
        name = CLASSES[int(self.explained[i])]
        return f"no positive evidence for {name} found" if self.blank[i] else f"evidence for {name}"


def overlay_png(image: np.ndarray, heatmap: np.ndarray, path: Path, title: str, caption: str, blank: bool,
                method: str = "HiResCAM") -> Path:
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
    axes[1].set_title(method, fontsize=9)
    fig.suptitle(title, fontsize=10)
    return save(fig, Path(path))


def heatmap_rgba(heatmap: np.ndarray, size: int) -> np.ndarray:
    """A colour heatmap with its own transparency, for drawing over an image (web page)."""
    import matplotlib

    resized = tf.image.resize(heatmap[..., None], (size, size)).numpy()[..., 0]
    rgba = matplotlib.colormaps["jet"](resized)
    rgba[..., 3] = 0.55 * np.clip(resized, 0, 1)
    return (rgba * 255).astype(np.uint8)
