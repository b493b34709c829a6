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


def fit_head_on_features(model: keras.Model, images: np.ndarray, labels: np.ndarray,
                         batch_size: int = 32) -> np.ndarray:
    """Set the model's last Dense layer to a logistic regression on the pooled base features of `images`
    (augmentation, noise and dropout are inactive at inference); returns the probe's P(pneumonia) of each.

    The regression's strength is chosen by 5-fold cross-validated log-loss: an unregularised probe separates
    the training images perfectly with large weights, and the fine-tuning that follows starts from a head that
    is certain and wrong on every augmented image (its first epoch's loss was twice the zero head's).
    """
    from sklearn.linear_model import LogisticRegressionCV

    features = keras.Model(model.inputs, _pooled(model).output).predict(images, batch_size=batch_size, verbose=0)
    features = features.astype(np.float32)  # under mixed bfloat16 they come as bfloat16, which scikit-learn refuses
    head = model.layers[-1]
    if not isinstance(head, keras.layers.Dense) or head.kernel.shape != (features.shape[1], 1):
        raise ValueError(f"{model.name}: the last layer is not a one-unit head on the pooled features")
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
    probe = LogisticRegressionCV(Cs=np.logspace(-4, 0, 5), l1_ratios=(0.0,), cv=5, scoring="neg_log_loss",
                                 max_iter=2000, use_legacy_attributes=False)  # L2, as before; scikit-learn 1.10 form
    probe.fit((features - mean) / scale, labels)
    # The standardisation folded into the Dense layer, which sees the raw pooled features.
    kernel = probe.coef_[0] / scale
    head.set_weights([kernel[:, None].astype("float32"),
                      (probe.intercept_ - kernel @ mean).astype("float32")])
    probabilities = probe.predict_proba((features - mean) / scale)[:, 1]
    log.info("linear probe on %d pooled features (C=%.0e): training accuracy %.3f", features.shape[1],
             probe.C_, np.mean((probabilities > 0.5) == labels))
    return probabilities
