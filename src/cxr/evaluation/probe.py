"""The shortcut probe: how well six global intensity and border statistics alone predict the label.

A model can read the label from acquisition cues (collimation borders, exposure) instead of the lungs.
If a logistic regression on these few numbers separates the classes, so can a CNN, and it will fail on
X-rays from another batch where the cues differ. Used by `cxr audit` (on data) and `cxr stress` (on a run).
"""

import numpy as np

BORDER_PX, AT_PX = 6, 64  # the border: a 6-pixel frame of the image seen at 64 x 64
FEATURES = ("p1", "p5", "border_mean", "border_std", "mean", "std")  # the others: at the model's resolution
WARN_ABOVE = 0.65


GLOBAL_STATISTICS = ("p1", "p5", "border_mean", "border_std", "mean", "std")  # the columns of global_statistics


def global_statistics(images: np.ndarray) -> np.ndarray:
    """(n, 6) statistics of (n, size, size[, 1]) uint8 images, in the order of GLOBAL_STATISTICS."""
    import cv2

    frame = np.ones((AT_PX, AT_PX), bool)
    frame[BORDER_PX:-BORDER_PX, BORDER_PX:-BORDER_PX] = False
    rows = []
    for image in np.asarray(images).reshape(len(images), images.shape[1], images.shape[2]):
        border = cv2.resize(image, (AT_PX, AT_PX), interpolation=cv2.INTER_AREA)[frame].astype(np.float32)
        pixels = image.astype(np.float32)
        p1, p5 = np.percentile(pixels, [1, 5])
        rows.append([p1, p5, border.mean(), border.std(), pixels.mean(), pixels.std()])
    return np.array(rows, np.float32)


def probe_auc(features: np.ndarray, labels, groups=None, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated ROC AUC of a logistic regression on the features (folds grouped by patient)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    folds = min(folds, int(np.bincount(labels).min()))
    if folds < 2:
        return float("nan")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    scores = cross_val_predict(model, features, labels, groups=groups, cv=splitter, method="predict_proba")[:, 1]
    return float(roc_auc_score(labels, scores))


def shortcut_probe(images: np.ndarray, labels, groups=None) -> float:
    return probe_auc(global_statistics(images), labels, groups)
