"""Out-of-distribution guard: does an input look like the frontal chest X-rays the model was trained on?

A model answers "PNEUMONIA, 0.9999" for a photo of a cat as readily as for an X-ray. The guard describes
each preprocessed image (a 16x16 thumbnail reduced by PCA, the PCA reconstruction error, edge and
texture energy, the grey-level histogram), fits the training split's distribution of these descriptions
(scikit-learn's Ledoit-Wolf covariance), and scores an input by its Mahalanobis distance from it. The
cut-off is the 99.9th percentile of the validation scores: about 1 X-ray in 1,000 of the training
batch is flagged. Scoring needs numpy and OpenCV only (the ONNX path imports no TensorFlow).
"""

from pathlib import Path

import numpy as np

from cxr.files import written_aside
from cxr.inference.mahalanobis import distance, fit_distance

GUARD_FILE = "ood.npz"
CUTOFF_QUANTILE = 0.999
RULE = f"Mahalanobis distance above the {CUTOFF_QUANTILE * 100:g}th percentile of the validation split"
THUMB, COMPONENTS = 16, 16


def _thumbnails_and_texture(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image (uint8, (n, h, w) or (n, h, w, 1)): a 16x16 thumbnail and texture measures (mean absolute
    step across and down, mean absolute Laplacian, each logged; an 8-bin histogram), on the 0..1 scale.

    One image at a time: a float copy of a whole training split costs seconds of first touches of fresh
    memory, the loop a quarter of a second."""
    import cv2

    images = np.asarray(images)
    images = images.reshape(images.shape[:3])
    thumbs = np.empty((len(images), THUMB * THUMB), np.float32)
    texture = np.empty((len(images), 11), np.float64)
    for i, image in enumerate(images):
        thumbs[i] = cv2.resize(image.astype(np.float32), (THUMB, THUMB), interpolation=cv2.INTER_AREA).ravel()
        across = cv2.absdiff(image[:, 1:], image[:, :-1]).mean()
        down = cv2.absdiff(image[1:], image[:-1]).mean()
        laplacian = np.abs(cv2.Laplacian(image, cv2.CV_32F)).mean()
        texture[i, :3] = np.log(np.array([across, down, laplacian]) / 255.0 + 1e-4)
        texture[i, 3:] = np.bincount(image.ravel() >> 5, minlength=8) / image.size  # 8 equal bins of 0..255
    return thumbs / 255.0, texture


def _description(thumbs, texture, pca_mean, pca_components) -> np.ndarray:
    """PCA coordinates of the thumbnail, the log of its reconstruction error, and the texture measures."""
    z = (thumbs - pca_mean) @ pca_components.T
    residual = np.linalg.norm(thumbs - (z @ pca_components + pca_mean), axis=1)
    return np.column_stack([z, np.log(residual + 1e-6), texture])


class StoredGuard:
    """A guard's parameters and cut-off, stored as one .npz in the run folder; higher scores = less like the
    training X-rays, flagged above the cut-off."""

    def __init__(self, params: dict):
        self.params = {k: np.asarray(v) for k, v in params.items()}
        self.cutoff = float(self.params["cutoff"])

    def flags(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) > self.cutoff

    def save(self, path: Path) -> None:
        with written_aside(path) as tmp:
            np.savez(tmp, **self.params)

    @classmethod
    def load(cls, path: Path):
        with np.load(path, allow_pickle=False) as stored:
            return cls(dict(stored))


class Guard(StoredGuard):
    """Scores (higher = less like the training X-rays) and flags for preprocessed (n, size, size) images."""

    def _describe(self, images: np.ndarray) -> np.ndarray:
        return _description(*_thumbnails_and_texture(images), self.params["pca_mean"], self.params["pca_components"])

    def score(self, images: np.ndarray) -> np.ndarray:
        if len(images) == 0:
            return np.zeros(0, np.float32)
        p = self.params
        fitted = {"mean": p["scale_mean"], "std": p["scale_std"], "location": p["location"],
                  "precision": p["precision"]}
        return distance(fitted, self._describe(images)).astype(np.float32)

    @classmethod
    def fit(cls, train_images: np.ndarray, val_images: np.ndarray) -> "Guard":
        from sklearn.decomposition import PCA

        thumbs, texture = _thumbnails_and_texture(train_images)
        pca = PCA(min(COMPONENTS, len(thumbs) - 1), random_state=0).fit(thumbs)
        fitted = fit_distance(_description(thumbs, texture, pca.mean_, pca.components_))
        params = {"pca_mean": pca.mean_, "pca_components": pca.components_, "scale_mean": fitted["mean"],
                  "scale_std": fitted["std"], "location": fitted["location"], "precision": fitted["precision"]}
        cutoff = np.quantile(cls({**params, "cutoff": np.inf}).score(val_images), CUTOFF_QUANTILE)
        return cls({**params, "cutoff": cutoff})


def load_for_run(run_dir: Path | None) -> "Guard | None":
    """The guard saved in a run folder; None for a run saved without one (or a model not yet saved)."""
    if run_dir is None or not (Path(run_dir) / GUARD_FILE).exists():
        return None
    return Guard.load(Path(run_dir) / GUARD_FILE)


def fit_for_run(run_dir: Path, train_images: np.ndarray, val_images: np.ndarray) -> dict:
    """Fit the guard on a run's training split, save it in the run folder; what model.json records of it."""
    guard = Guard.fit(train_images, val_images)
    guard.save(Path(run_dir) / GUARD_FILE)
    return {"file": GUARD_FILE, "cutoff": round(guard.cutoff, 4), "rule": RULE,
            "validation_flagged": float(guard.flags(guard.score(val_images)).mean())}
