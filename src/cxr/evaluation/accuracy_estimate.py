"""How accurate is the model on an unlabelled folder? Two estimates, each checked where the answer is known.

- **ATC** (Garg et al. 2022): the share of the folder whose margin from the threshold exceeds the margin above
  which validation holds as many X-rays as it has correct answers. It reads only the model's confidence, and a
  model is as confident on another batch as on its own: it flattered most the model that generalised worst.
- **Agreement** (Jiang et al. 2022; Baek et al. 2022, "agreement on the line"): how often the model agrees with
  a second opinion that learned differently, a logistic regression on a frozen ImageNet network's features
  (cxr.inference.population) fitted on the training split. Across shifts, accuracy and agreement fall together
  on a line (in probit scale) that is fitted on validation under the held-out acquisition families, where both
  are measured, and read at the folder's agreement.

Each is validated family by family, leaving the family out of the line it is read from; the interval is the
larger of the leave-one-out error and the folder's own sampling error. The site check leads with the lower
of the two estimates and says when they disagree.
"""

from dataclasses import dataclass

import numpy as np

DISAGREE = 0.03  # estimates further apart than this are reported as disagreeing
Z = 1.96


def atc(val_probs, val_labels, probs, threshold: float) -> float:
    """ATC's estimate for `probs`, with the cut learned on labelled validation outputs."""
    def margin(p):
        clip = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
        t = np.clip(threshold, 1e-7, 1 - 1e-7)
        return np.abs(np.log(clip / (1 - clip)) - np.log(t / (1 - t)))

    accuracy = float(np.mean((np.asarray(val_probs) >= threshold) == np.asarray(val_labels).astype(bool)))
    cut = np.quantile(margin(val_probs), 1 - accuracy)
    return float(np.mean(margin(probs) > cut))


class SecondOpinion:
    """A logistic regression on frozen-network features, fitted on the training split; its calls."""

    def __init__(self, features: np.ndarray, labels: np.ndarray):
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.model = make_pipeline(StandardScaler(), PCA(64, random_state=0),
                                   LogisticRegression(C=0.1, class_weight="balanced", max_iter=2000))
        self.model.fit(features, labels)

    def calls(self, features: np.ndarray) -> np.ndarray:
        return self.model.predict(features).astype(bool)


def _probit(p):
    from scipy.stats import norm

    return norm.ppf(np.clip(p, 1e-3, 1 - 1e-3))


def _line(agreement, accuracy) -> tuple[float, float]:
    """(slope, intercept) of probit(accuracy) on probit(agreement); slope 1 where the points cannot fix one."""
    x, y = _probit(np.asarray(agreement)), _probit(np.asarray(accuracy))
    if len(x) < 3 or np.ptp(x) < 0.05:
        return 1.0, float(np.mean(y - x))
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def _read(line, agreement: float) -> float:
    from scipy.stats import norm

    return float(norm.cdf(line[0] * _probit(agreement) + line[1]))


@dataclass
class Condition:
    """One labelled condition of validation: the model's calls are right or not, and agree with the second
    opinion's or not; `atc`: ATC's estimate on it."""
    name: str
    correct: np.ndarray
    agree: np.ndarray
    atc: float


def validated(conditions: list[Condition]) -> list[dict]:
    """Per condition: measured accuracy, ATC's and the agreement line's estimates (the line fitted without it)."""
    rows = []
    for i, c in enumerate(conditions):
        others = [o for j, o in enumerate(conditions) if j != i]
        line = _line([o.agree.mean() for o in others], [o.correct.mean() for o in others])
        rows.append({"condition": c.name, "measured": float(c.correct.mean()), "atc": c.atc,
                     "agreement_rate": float(c.agree.mean()), "agreement": _read(line, c.agree.mean())})
    return rows


def estimate(conditions: list[Condition], folder_agree: np.ndarray, folder_atc: float) -> dict:
    """Both estimates for a folder, their intervals, the one to lead with and a note where they disagree."""
    checks = validated(conditions)
    line = _line([c.agree.mean() for c in conditions], [c.correct.mean() for c in conditions])
    n = max(len(folder_agree), 1)
    by_method = {}
    for method, value in (("agreement", _read(line, float(np.mean(folder_agree)))), ("atc", folder_atc)):
        error = float(np.sqrt(np.mean([(r[method] - r["measured"]) ** 2 for r in checks])))
        half = max(Z * error, Z * np.sqrt(value * (1 - value) / n))
        by_method[method] = {"estimate": value, "interval": [max(0.0, value - half), min(1.0, value + half)],
                             "validation_rmse": error}
    lead = min(by_method, key=lambda m: by_method[m]["estimate"])
    gap = abs(by_method["agreement"]["estimate"] - by_method["atc"]["estimate"])
    note = (f"the two estimates disagree by {gap:.3f}: the lower leads; trust neither without a labelled sample"
            if gap > DISAGREE else "the two estimates agree")
    return {"lead": lead, "estimated_accuracy": by_method[lead]["estimate"], "interval": by_method[lead]["interval"],
            "methods": by_method, "agreement_rate": float(np.mean(folder_agree)),
            "line": {"slope": line[0], "intercept": line[1]}, "note": note, "validation": checks}
