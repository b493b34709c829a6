"""Metrics, the validation-chosen operating threshold, and patient-level bootstrap confidence intervals.

Pure functions of labels and probabilities: nothing here knows about models or training.
"""

import numpy as np
from sklearn import metrics as skm

from cxr import CLASSES

MIN_SENSITIVITY = 0.975  # a screening operating point: missing pneumonia costs more than a second look
THRESHOLD_RULE = (
    f"highest specificity with sensitivity >= {MIN_SENSITIVITY} on the validation split "
    "(ties: highest sensitivity)"
)
# Where validation also holds tightly framed copies, pooling them under the rule above drags the threshold down
# (a crop lowers the scores of pneumonia X-rays, and sensitivity must hold on those too), and the specificity on
# tight framings pays for it. The framed rule trades the two on the worst condition instead.
FRAMED_FLOOR, WINDOW = 0.95, 0.05
FRAMED_THRESHOLD_RULE = (
    "highest worst-case balanced accuracy (mean of sensitivity and specificity) over the validation split and its "
    "copies under every validation condition (cropped 10% and 20% from every side, and the held-out acquisition "
    f"changes), averaged over thresholds within +-{WINDOW} so that a few "
    f"borderline images cannot move it, among thresholds keeping sensitivity >= {FRAMED_FLOOR} on the unchanged split"
)


def choose_threshold(labels, probs, min_sensitivity: float = MIN_SENSITIVITY) -> float:
    """Operating point on validation: the most specific threshold that still catches min_sensitivity."""
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float64)
    if labels.min() == labels.max():
        return 0.5  # one class only: no curve to choose on
    fpr, tpr, thresholds = skm.roc_curve(labels, probs)
    ok = np.flatnonzero(tpr >= min_sensitivity)
    best = ok[np.lexsort((-tpr[ok], fpr[ok]))[0]]  # lowest fpr first, then highest tpr
    return float(min(thresholds[best], 1.0))


def choose_threshold_worst_framing(labels, probs, framings) -> float:
    """Operating point under FRAMED_THRESHOLD_RULE; `framings` gives each row's copy (0: unchanged), on a grid of
    0.01 so that the smoothing window means the same on every run."""
    labels, probs, framings = np.asarray(labels).astype(bool), np.asarray(probs, np.float64), np.asarray(framings)
    grid = np.round(np.arange(0.01, 1.0, 0.01), 2)
    positive = probs[None, :] >= grid[:, None]  # (thresholds, rows)
    worst, unchanged_sensitivity = np.full(grid.size, np.inf), None
    for framing in np.unique(framings):
        sick, healthy = labels & (framings == framing), ~labels & (framings == framing)
        if not (sick.any() and healthy.any()):
            continue
        sensitivity = positive[:, sick].mean(axis=1)
        worst = np.minimum(worst, (sensitivity + 1.0 - positive[:, healthy].mean(axis=1)) / 2)
        if framing == 0:
            unchanged_sensitivity = sensitivity
    if unchanged_sensitivity is not None:
        k = round(WINDOW / 0.01)
        smoothed = np.convolve(np.pad(worst, k, mode="edge"), np.ones(2 * k + 1) / (2 * k + 1), mode="valid")
        smoothed[unchanged_sensitivity < FRAMED_FLOOR] = -np.inf
        if np.isfinite(smoothed).any():
            return float(grid[np.argmax(smoothed)])
    # No curve to choose on (one class only among the unchanged images), or no threshold keeps the floor.
    return choose_threshold(labels, probs)


def _safe_div(a, b):
    return float(a / b) if b else 0.0


def binary_metrics(labels, probs, threshold: float) -> dict:
    labels = np.asarray(labels).astype(bool)
    probs = np.asarray(probs, dtype=np.float64)
    predicted = probs >= threshold
    # Counted directly: this runs a thousand times per bootstrap.
    tp = int(np.sum(predicted & labels))
    fp = int(np.sum(predicted & ~labels))
    fn = int(np.sum(~predicted & labels))
    tn = int(labels.size - tp - fp - fn)
    both = 0 < labels.sum() < labels.size
    return {
        "n": int(labels.size),
        "threshold": float(threshold),
        "accuracy": _safe_div(tp + tn, labels.size),
        "sensitivity": _safe_div(tp, tp + fn),
        "specificity": _safe_div(tn, tn + fp),
        "precision": _safe_div(tp, tp + fp),
        "f1": _safe_div(2 * tp, 2 * tp + fp + fn),
        "roc_auc": float(skm.roc_auc_score(labels, probs)) if both else float("nan"),
        "pr_auc": float(skm.average_precision_score(labels, probs)) if both else float("nan"),
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }


BOOT_CHUNK = 200  # resamples scored at once
CI_METRICS = ("accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc", "pr_auc")


def bootstrap_ci(labels, probs, threshold: float, groups=None, n_boot: int = 1000, seed: int = 0) -> dict:
    """95% percentile intervals from resampling patients (groups) with replacement.

    Images of one patient are correlated: resampling them one by one gives intervals that are too narrow.
    Without groups every image is its own group. A resample is a count per patient (how often it was drawn),
    so all of them are scored at once by `weighted_metrics`.
    """
    labels, probs = np.asarray(labels).astype(bool), np.asarray(probs, dtype=np.float64)
    groups = np.arange(labels.size) if groups is None else np.asarray(groups)
    _, group_of = np.unique(groups, return_inverse=True)
    n_groups = group_of.max() + 1
    rng = np.random.default_rng(seed)
    samples = {name: [] for name in CI_METRICS}
    for start in range(0, n_boot, BOOT_CHUNK):  # a chunk of resamples at a time bounds the memory
        counts = rng.multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=min(BOOT_CHUNK, n_boot - start))
        for name, values in weighted_metrics(labels, probs, threshold, counts[:, group_of]).items():
            samples[name].extend(values[~np.isnan(values)])
    return {
        name: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if v else [float("nan")] * 2
        for name, v in samples.items()
    }


def weighted_metrics(labels, probs, threshold: float, weights: np.ndarray) -> dict:
    """CI_METRICS for each row of `weights` (how many times each image counts), as binary_metrics gives them on
    the images repeated that many times; NaN for a row that holds one class only. ROC-AUC and average precision
    are read off one sort of the probabilities, ties grouped as scikit-learn groups them."""
    weights = np.asarray(weights, dtype=np.float64)
    pos, neg = weights * labels, weights * ~labels
    predicted = probs >= threshold
    tp, fp = pos @ predicted, neg @ predicted
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    fn, tn = n_pos - tp, n_neg - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"accuracy": (tp + tn) / (n_pos + n_neg), "sensitivity": tp / n_pos, "specificity": tn / n_neg,
               "precision": np.where(tp + fp > 0, tp / (tp + fp), 0.0),
               "f1": 2 * tp / (2 * tp + fp + fn)}
        order = np.argsort(-probs, kind="stable")
        last_of_tie = np.r_[np.flatnonzero(np.diff(probs[order])), probs.size - 1]  # one point per distinct score
        cum_tp = np.cumsum(pos[:, order], axis=1)[:, last_of_tie]
        cum_fp = np.cumsum(neg[:, order], axis=1)[:, last_of_tie]
        tpr = np.c_[np.zeros(len(weights)), cum_tp / n_pos[:, None]]
        fpr = np.c_[np.zeros(len(weights)), cum_fp / n_neg[:, None]]
        out["roc_auc"] = np.trapezoid(tpr, fpr, axis=1)
        precision_at = np.where(cum_tp + cum_fp > 0, cum_tp / (cum_tp + cum_fp), 1.0)
        out["pr_auc"] = np.sum(np.diff(tpr, axis=1) * precision_at, axis=1)
    one_class = (n_pos == 0) | (n_neg == 0)
    return {name: np.where(one_class, np.nan, out[name]) for name in CI_METRICS}


def full_report(labels, probs, threshold: float, rule: str = THRESHOLD_RULE, groups=None) -> dict:
    """Everything metrics.json holds: metrics at the chosen threshold, at 0.5, and their intervals."""
    report = binary_metrics(labels, probs, threshold)
    report["threshold_rule"] = rule
    report["at_0.5"] = binary_metrics(labels, probs, 0.5)
    report["ci95"] = bootstrap_ci(labels, probs, threshold, groups)
    report["ci95_resamples"] = "images (no patient ids)" if groups is None else "patients"
    return report


def classification_report(labels, probs, threshold: float) -> str:
    predicted = (np.asarray(probs) >= threshold).astype(int)
    return skm.classification_report(labels, predicted, labels=[0, 1], target_names=list(CLASSES), digits=3,
                                     zero_division=0)


def expected_calibration_error(labels, probs, bins: int = 10) -> float:
    """Mean |observed rate - predicted probability| over equal-width probability bins, weighted by bin size."""
    labels, probs = np.asarray(labels, dtype=np.float64), np.asarray(probs, dtype=np.float64)
    which = np.minimum((probs * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            error += inside.mean() * abs(labels[inside].mean() - probs[inside].mean())
    return float(error)


def calibration(labels, probs) -> dict:
    return {"brier": float(skm.brier_score_loss(labels, probs)), "ece": expected_calibration_error(labels, probs)}
