"""Which run to serve, chosen on validation only: the run whose worst framing does best.

The training batch frames NORMAL X-rays wide, other hospitals frame them tightly, and a model that reads
"large anatomy" as pneumonia keeps its ROC AUC on tight framings while its specificity at the chosen
threshold collapses. A mean over many conditions averages that away; the worst condition does not.
"""

import numpy as np

CONDITIONS = ("none", "borders_cropped_10%", "borders_cropped_20%")  # as named in stress_val.json
RULE = ("highest worst-case balanced accuracy (mean of sensitivity and specificity at the run's own threshold) on "
        "the validation split over three framings: unchanged, and cropped 10% and 20% from every side; ties: "
        "highest worst-case ROC AUC")


def has_conditions(stress_val: dict) -> bool:
    return all(name in stress_val["perturbations"] for name in CONDITIONS[1:])


def robust_scores(stress_val: dict) -> dict:
    """Worst-case balanced accuracy and ROC AUC over CONDITIONS, from a run's validation stress result."""
    rows = [stress_val["baseline"]] + [stress_val["perturbations"][name] for name in CONDITIONS[1:]]
    balanced = [(r["sensitivity"] + r["specificity"]) / 2 for r in rows]
    return {"worst_balanced_accuracy": float(np.min(balanced)), "worst_roc_auc": float(min(r["roc_auc"] for r in rows)),
            "by_condition": {name: {"balanced_accuracy": b, "roc_auc": r["roc_auc"], "specificity": r["specificity"],
                                    "sensitivity": r["sensitivity"]} for name, b, r in zip(CONDITIONS, balanced, rows)}}


def choose(scores: dict) -> str:
    """The name whose scores (from robust_scores) are best under RULE."""
    return max(scores, key=lambda name: (round(scores[name]["worst_balanced_accuracy"], 6),
                                         scores[name]["worst_roc_auc"]))
