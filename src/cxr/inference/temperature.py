"""Temperature scaling (Guo et al. 2017): numpy only, so the prediction path starts fast."""

import numpy as np


def logits(probs) -> np.ndarray:
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def apply_temperature(probs, temperature: float) -> np.ndarray:
    return calibrated(logits(probs), temperature)


def calibrated(logit, temperature: float) -> np.ndarray:
    """sigmoid(logit / temperature) in float64: the calibrated probability."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logit, dtype=np.float64) / temperature))


def fit_temperature(labels, probs) -> float:
    """The T > 0 that minimises the log loss of sigmoid(logit / T) on these labels."""
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, dtype=np.float64)
    if labels.min() == labels.max():
        return 1.0
    z = logits(probs)

    def log_loss(log_t):
        p = np.clip(1.0 / (1.0 + np.exp(-z / np.exp(log_t))), 1e-15, 1 - 1e-15)
        return -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))

    return float(np.exp(minimize_scalar(log_loss, bounds=(-3.0, 3.0), method="bounded").x))
