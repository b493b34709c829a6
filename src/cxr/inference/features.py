"""A model's features for the feature guard and the site check: the penultimate features (the input of the
final Dense layer) and the channel means of the layer the evidence maps explain, from the same replay
(cxr.inference.replay). An ensemble's are its members', side by side, each member on the input it sees."""

import numpy as np
import tensorflow as tf

from cxr.inference.replay import Replay
from cxr.models.ensemble import member_view

BATCH = 64


class FeatureExtractor:
    def __init__(self, members: list[tuple[object, int]], size: int):
        """`members`: (Keras model, input size) pairs; one pair for a plain run."""
        self.size = size
        self.parts = []
        for model, member_size in members:
            replay = Replay(model)

            def run(x, replay=replay):
                held, penultimate, _ = replay.run(x)
                return tf.cast(penultimate, tf.float32), tf.reduce_mean(tf.cast(held, tf.float32), axis=(1, 2))

            spec = tf.TensorSpec((None, member_size, member_size, 1), tf.float32)
            self.parts.append((tf.function(run, input_signature=[spec]), member_size))

    def __call__(self, images: np.ndarray) -> dict:
        """{"penultimate": (n, d1), "intermediate": (n, d2)} for preprocessed (n, size, size[, 1]) images."""
        x = np.asarray(images, np.float32).reshape(-1, self.size, self.size, 1)
        blocks = {"penultimate": [], "intermediate": []}
        for run, member_size in self.parts:
            view = member_view(x, member_size)
            outputs = [run(view[i: i + BATCH]) for i in range(0, len(view), BATCH)] or [(np.zeros((0, 0)),) * 2]
            for key, index in (("penultimate", 0), ("intermediate", 1)):
                blocks[key].append(np.concatenate([np.asarray(o[index]) for o in outputs]))
        return {key: np.concatenate(parts, axis=1) for key, parts in blocks.items()}
