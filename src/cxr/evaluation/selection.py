"""Which run to serve, chosen on validation only: the run whose worst validation condition does best.

A model that reads a cue of the training batch keeps its ROC AUC on X-rays where the cue differs while its
specificity at the chosen threshold collapses; a mean over many conditions averages that away, the worst
condition does not. The conditions are the framings (NORMAL X-rays of another hospital are framed tighter)
and the held-out acquisition families (another console's processing, burned-in text, another detector's
grain, resolution loss, re-compression: cxr.data.acquisition), whose forms no run is trained on: each
family's entry says which run was trained against a related form (`seen_in_training`), so no run's score on
a family it trained against passes unremarked.
"""

import numpy as np

from cxr.data.acquisition import SEEN_IN_TRAINING
from cxr.data.framing import validation_conditions

CONDITIONS = ("none", *validation_conditions())  # as named in stress_val.json
RULE = ("highest worst-case balanced accuracy (mean of sensitivity and specificity at the run's own threshold) on "
        f"the validation split over {len(CONDITIONS)} conditions: unchanged, cropped 10% and 20% from every side, "
        "and the held-out acquisition changes (processing curves, edge enhancement, burned-in text, detector "
        "grain, resolution loss, JPEG re-compression); ties: highest worst-case ROC AUC")


FROM_SCRATCH = frozenset({"cnn", "cnn_aug", "cnn_seed"})  # the registry's kinds without pretrained weights
SERVED_ONLY_PRETRAINED = (
    "only runs built from pretrained networks are served: a network trained from scratch on one batch learns that "
    "batch (the from-scratch CNN passed every synthetic validation condition and lost half its specificity on "
    "X-rays of another batch, where the fine-tuned ImageNet networks kept theirs)")


def from_scratch_parts(info) -> list[str]:
    """The kinds in a run (itself, or an ensemble's members) that start from random weights."""
    from cxr.runs.info import RunInfo

    if info.is_ensemble:
        return [kind for m in info.members for kind in from_scratch_parts(RunInfo.read(m.run))]
    return [info.model] if info.model in FROM_SCRATCH else []


def has_conditions(stress_val) -> bool:
    """Whether a validation stress result (cxr.runs.results.Stress) holds every condition the rule reads."""
    return all(name in stress_val.perturbations for name in CONDITIONS[1:])


def related_training(name: str) -> str | None:
    """The training family of a form related to validation condition `name` (None: none)."""
    return "framing" if name.startswith("borders_cropped") else SEEN_IN_TRAINING.get(name)


def robust_scores(stress_val, trained_against: list[str] = ()) -> dict:
    """Worst-case balanced accuracy and ROC AUC over CONDITIONS, from a run's validation stress result
    (cxr.runs.results.Stress); `trained_against`: the training families of the run (model.json), to mark the
    conditions it has seen a related form of."""
    rows = [stress_val.baseline] + [stress_val.perturbations[name] for name in CONDITIONS[1:]]
    balanced = [r.balanced_accuracy for r in rows]
    by_condition = {}
    for name, b, r in zip(CONDITIONS, balanced, rows):
        by_condition[name] = {"balanced_accuracy": b, "roc_auc": r.roc_auc, "specificity": r.specificity,
                              "sensitivity": r.sensitivity,
                              "seen_in_training": related_training(name) in set(trained_against)}
    worst = int(np.argmin(balanced))
    return {"worst_balanced_accuracy": float(balanced[worst]), "worst_condition": CONDITIONS[worst],
            "worst_roc_auc": float(min(r.roc_auc for r in rows)),
            "worst_unseen_balanced_accuracy": float(min(
                b for name, b in zip(CONDITIONS, balanced) if not by_condition[name]["seen_in_training"])),
            "by_condition": by_condition}


def choose(scores: dict) -> str:
    """The name whose scores (from robust_scores) are best under RULE."""
    return max(scores, key=lambda name: (round(scores[name]["worst_balanced_accuracy"], 6),
                                         scores[name]["worst_roc_auc"]))
