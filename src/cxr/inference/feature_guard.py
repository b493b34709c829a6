"""The feature guard: does an X-ray look like the training batch's X-rays *to the model*?

The pixel guard (cxr.inference.ood) tells an X-ray from a photograph; it cannot tell a child's chest X-ray from
an adult's, or one hospital's processing from another's. The model's own representations can (Lee et al.
2018: Mahalanobis distance on a network's features, from more than one layer). Two blocks of features, each
reduced by PCA and scored by its Mahalanobis distance from the training split (Ledoit-Wolf covariance):

- `penultimate`: the input of the final Dense layer, what the decision reads;
- `intermediate`: the channel means of the layer the evidence maps explain (a grid of 8 x 8 or finer):
  texture, contrast and scale, which change with a scanner or a population before the decision does.

Each distance is divided by its own 99th percentile on the validation split, the larger of the two is the
score, and the cut-off is the 99.5th percentile of the validation scores: about 0.5% of the training batch's
validation X-rays are flagged (a 99th-percentile cut flagged 1.7% of the carved test split). An ensemble's
features are its members', side by side (each on the input it sees).
"""

from pathlib import Path

import numpy as np

from cxr.inference.ood import Guard

FEATURE_GUARD_FILE = "feature_guard.npz"
QUANTILE = 0.99  # each block's distance is scaled by this quantile of validation
CUTOFF_QUANTILE = 0.995  # the cut-off: on the carved test split a 99% cut flagged 1.7%, over the 1.5% aimed at
BLOCKS = ("penultimate", "intermediate")
COMPONENTS = 64
RULE = (f"the larger of two Mahalanobis distances on the model's features (penultimate; channel means of the "
        f"explained layer), each scaled by its validation {QUANTILE:.0%} quantile, above the {CUTOFF_QUANTILE:.1%} "
        "quantile of the validation split")


class FeatureGuard(Guard):
    """Scores (higher = less like the training X-rays to the model) and flags for the model's features; stored
    and flagged as the pixel guard is."""

    def _distance(self, block: str, x: np.ndarray) -> np.ndarray:
        p = {k[len(block) + 1:]: v for k, v in self.params.items() if k.startswith(block + "_")}
        z = ((x - p["mean"]) / p["std"] - p["pca_mean"]) @ p["pca_components"].T - p["location"]
        squared = np.einsum("ij,jk,ik->i", z, p["precision"], z)
        return np.sqrt(np.maximum(squared, 0) / z.shape[1]) / p["scale"]

    def score(self, features: dict) -> np.ndarray:
        if len(features["penultimate"]) == 0:
            return np.zeros(0, np.float32)
        return np.max([self._distance(b, features[b]) for b in BLOCKS], axis=0).astype(np.float32)

    @classmethod
    def fit(cls, train: dict, val: dict) -> "FeatureGuard":
        from sklearn.covariance import LedoitWolf
        from sklearn.decomposition import PCA

        params = {}
        for block in BLOCKS:
            x = train[block].astype(np.float64)
            mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
            pca = PCA(min(COMPONENTS, x.shape[1], len(x) - 1), random_state=0).fit((x - mean) / std)
            z = pca.transform((x - mean) / std)
            covariance = LedoitWolf().fit(z)
            params.update({f"{block}_mean": mean, f"{block}_std": std, f"{block}_pca_mean": pca.mean_,
                           f"{block}_pca_components": pca.components_, f"{block}_location": covariance.location_,
                           f"{block}_precision": covariance.precision_, f"{block}_scale": 1.0})
            unscaled = cls({**params, "cutoff": np.inf})._distance(block, val[block])
            params[f"{block}_scale"] = float(np.quantile(unscaled, QUANTILE))
        cutoff = np.quantile(cls({**params, "cutoff": np.inf}).score(val), CUTOFF_QUANTILE)
        return cls({**params, "cutoff": cutoff})


def load_feature_guard(run_dir: Path | None) -> "FeatureGuard | None":
    if run_dir is None or not (Path(run_dir) / FEATURE_GUARD_FILE).exists():
        return None
    return FeatureGuard.load(Path(run_dir) / FEATURE_GUARD_FILE)


def fit_feature_guard(run_dir: Path, train: dict, val: dict) -> dict:
    """Fit on a run's training features, save beside the model; what model.json records of it."""
    guard = FeatureGuard.fit(train, val)
    guard.save(Path(run_dir) / FEATURE_GUARD_FILE)
    return {"file": FEATURE_GUARD_FILE, "cutoff": round(guard.cutoff, 4), "rule": RULE,
            "validation_flagged": float(guard.flags(guard.score(val)).mean())}
