"""The feature guard: does an X-ray look like the training batch's X-rays, to the model and to a network that
never saw them?

The pixel guard (cxr.inference.ood) tells an X-ray from a photograph; it cannot tell a child's chest X-ray from
an adult's, or one hospital's processing from another's. Representations can (Lee et al. 2018: Mahalanobis
distance on a network's features, from more than one layer). Blocks of features, each scored by its Mahalanobis
distance from the training split (cxr.inference.mahalanobis, after PCA) and divided by its own 99th percentile
on the validation split:

- the model's `penultimate` features (the input of the final Dense layer, what the decision reads) and the
  channel means of the layer the evidence maps explain (`intermediate`: a grid of 8 x 8 or finer);
- `population` (cxr.inference.population): channel statistics of a frozen ImageNet MobileNetV2's last feature
  map. A model trained on one batch is blind to much of what makes another population another: the model's
  blocks alone flagged 11% to 20% of adult X-rays of other hospitals, this one 74% (docs/trust.md).

The score is the largest of the three distances, and the cut-off is the 99th percentile of the validation
scores: 1% of the training batch's validation X-rays are flagged (a MobileNetV2 run: 1.0% of its carved test
split, 62% of `adults_dev`; a 99.5% cut flagged 42% of the adults). An
ensemble's model features are its members', side by side (each on the input it sees). Runs saved before the
population block keep the model's two.
"""

from pathlib import Path

import numpy as np

from cxr.inference.mahalanobis import distance, fit_distance
from cxr.inference.ood import StoredGuard
from cxr.inference.population import BLOCK as POPULATION

FEATURE_GUARD_FILE = "feature_guard.npz"
QUANTILE = 0.99  # each distance is scaled by this quantile of validation
CUTOFF_QUANTILE = 0.99  # the cut-off: at most 1% false alarms on the training batch
MODEL_BLOCKS = ("penultimate", "intermediate")
COMPONENTS = {"penultimate": 64, "intermediate": 64, POPULATION: 32}  # fewer: less alarm at another processing
RULE = (f"the largest of three Mahalanobis distances (the model's penultimate features; the channel means of its "
        f"explained layer; a frozen ImageNet MobileNetV2's channel statistics), each scaled by its "
        f"validation {QUANTILE:.0%} quantile, above the {CUTOFF_QUANTILE:.1%} quantile of the validation split")
FIELDS = ("mean", "std", "pca_mean", "pca_components", "location", "precision", "scale")


class FeatureGuard(StoredGuard):
    """Scores (higher = less like the training X-rays) and flags for a dict of feature blocks
    (Predictor.features)."""

    def _block(self, block: str) -> dict:
        return {field: self.params[f"{block}_{field}"] for field in FIELDS}

    @property
    def population(self) -> bool:
        """Whether it reads the frozen network's block (runs guarded before it was added do not)."""
        return f"{POPULATION}_mean" in self.params

    def _distance(self, block: str, features: dict) -> np.ndarray:
        fitted = self._block(block)
        return distance(fitted, features[block]) / fitted["scale"]

    def score(self, features: dict) -> np.ndarray:
        if len(features["penultimate"]) == 0:
            return np.zeros(0, np.float32)
        blocks = MODEL_BLOCKS + ((POPULATION,) if self.population else ())
        return np.max([self._distance(b, features) for b in blocks], axis=0).astype(np.float32)

    @classmethod
    def fit(cls, train: dict, val: dict) -> "FeatureGuard":
        params = {}
        for block in MODEL_BLOCKS + ((POPULATION,) if POPULATION in train else ()):
            fitted = fit_distance(train[block], COMPONENTS[block])
            fitted["scale"] = float(np.quantile(distance(fitted, val[block]), QUANTILE))
            params.update({f"{block}_{field}": value for field, value in fitted.items()})
        params["cutoff"] = np.quantile(cls({**params, "cutoff": np.inf}).score(val), CUTOFF_QUANTILE)
        return cls(params)


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
