"""LP-FT's first step: fit the head of an end-to-end model on its pretrained base's features, before any
layer of the base moves (Kumar et al., ICLR 2022, "Fine-Tuning can Distort Pretrained Features").

A head that starts at zero sends no gradient into the base on the first step, but it still learns while the
base is already moving; a head that starts as a fitted linear probe asks the base for small corrections only,
which keeps more of the ImageNet features that generalize to other batches.
"""

import logging

import keras
import numpy as np

log = logging.getLogger(__name__)


def _pooled(model: keras.Model) -> keras.layers.Layer:
    pooled = [layer for layer in model.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)]
    if not pooled:
        raise ValueError(f"{model.name}: no pooled features to fit a head on")
    return pooled[-1]


def fit_head_on_features(model: keras.Model, images: np.ndarray, labels: np.ndarray, batch_size: int = 32) -> float:
    """Set the model's last Dense layer to a logistic regression on the pooled base features of `images`
    (augmentation, noise and dropout are inactive at inference); returns the probe's training accuracy."""
    from sklearn.linear_model import LogisticRegression

    features = keras.Model(model.inputs, _pooled(model).output).predict(images, batch_size=batch_size, verbose=0)
    probe = LogisticRegression(C=1.0, max_iter=2000).fit(features, labels)
    head = model.layers[-1]
    if not isinstance(head, keras.layers.Dense) or head.kernel.shape != (features.shape[1], 1):
        raise ValueError(f"{model.name}: the last layer is not a one-unit head on the pooled features")
    head.set_weights([probe.coef_.T.astype("float32"), probe.intercept_.astype("float32")])
    accuracy = float(probe.score(features, labels))
    log.info("linear probe on %d pooled features: training accuracy %.3f", features.shape[1], accuracy)
    return accuracy
