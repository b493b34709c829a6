"""`cxr site-check FOLDER --against RUN`: is a folder of X-rays like the batch the run was trained on?

A model trained on one hospital's X-rays is used, sooner or later, on another's. This compares an unlabelled
folder with the run's own validation split (images the model never trained on, of the training batch) and
answers in one word, with the numbers behind it:

- **feature shift** (Rabanser et al. 2019, "Failing Loudly"): a domain classifier (logistic regression,
  5 folds grouped by patient) between the two batches on the model's penultimate features, what its decision
  reads (cxr.inference.features), its ROC AUC and a p-value against the same classifier on shuffled labels;
  and the kernel two-sample test (MMD, RBF kernel at the median distance) with a permutation p-value on those
  and the channel means of an earlier layer, which see texture and processing;
- **output shift**: a Kolmogorov-Smirnov test on the calibrated probabilities, and the predicted prevalence;
- **guard rate**: the share of X-rays the per-image guards flag, against what they flag on validation;
- **acquisition statistics**: intensity, sharpness, framing (the lung box) and bright corner marks, each
  batch's median and a KS test (a change the model happens to ignore, burned-in text say, still counts);
- **estimated accuracy** (Garg et al. 2022, ATC): the share of the folder whose margin from the decision
  threshold exceeds the margin above which validation holds as many X-rays as it has correct answers. It
  assumes the shift leaves the link between margin and correctness as it was; where the verdict is
  `different` that assumption is void and no estimate is given.

Verdict: `different` (another population or modality: do not use this model's answers) where the domain
classifier separates the batches almost perfectly or half the X-rays are flagged; `shifted` (expect lower
accuracy; check a labelled sample first) where any test rejects "same" at a family-wise 1% (Bonferroni over
all of them); else `same`.
It cannot prove the model right on a new site (a labelled sample can); it can say when not to trust it.
`alibi-detect` has these tests but pins NumPy < 2, scikit-image < 0.25 and TensorFlow < 2.19, which cxr
is past; the tests are a few lines on scikit-learn and SciPy.
"""

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from cxr import figures
from cxr.data.layout import discover, image_files, patient_id
from cxr.data.split import read_split_csv
from cxr.errors import DataError
from cxr.evaluation import accuracy_estimate, shift_tests
from cxr.evaluation.site_check_report import site_check_markdown
from cxr.inference.predictor import Predictor
from cxr.runs.site_check_result import SiteCheck

ALPHA = 0.01  # family-wise false-alarm rate of `shifted` on a batch of the training batch
DIFFERENT_AUC, DIFFERENT_FLAGGED = 0.90, 0.50
MIN_IMAGES = 10  # fewer: no batch test means anything
ESTIMATE_IMAGES = 400  # validation X-rays per held-out family that the accuracy estimates are checked on


@dataclass
class Batch:
    """One batch's model outputs, features, guard flags and acquisition statistics."""
    paths: list
    groups: list  # patients
    labels: np.ndarray | None
    probs: np.ndarray
    penultimate: np.ndarray  # what the decision reads
    features: np.ndarray  # penultimate and intermediate side by side
    flagged: np.ndarray
    statistics: dict
    population: np.ndarray  # the frozen network's features (cxr.inference.population): the second opinion reads them

    @classmethod
    def measured(cls, predictor: Predictor, images: np.ndarray, paths: list, labels=None) -> "Batch":
        from cxr.inference.population import BLOCK, population_features

        blocks = predictor.features(images)
        flags = [f for f in (predictor.out_of_distribution(images)[1],
                             predictor.feature_out_of_distribution(images, blocks)[1]) if f is not None]
        population = blocks[BLOCK] if BLOCK in blocks else population_features()(images)[BLOCK]
        return cls(paths=list(paths), groups=[patient_id(Path(p).name) for p in paths],
                   labels=None if labels is None else np.asarray(labels), probs=predictor.predict(images),
                   penultimate=blocks["penultimate"],
                   features=np.concatenate([blocks["penultimate"], blocks["intermediate"]], axis=1),
                   flagged=np.logical_or.reduce(flags) if flags else np.zeros(len(images), bool),
                   statistics=shift_tests.acquisition_statistics(images), population=population)

    def subset(self, rows) -> "Batch":
        """The same batch restricted to `rows` (indices)."""
        def take(value):
            if value is None:
                return None
            if isinstance(value, dict):
                return {k: v[rows] for k, v in value.items()}
            return [value[i] for i in rows] if isinstance(value, list) else value[rows]
        return Batch(**{f.name: take(getattr(self, f.name)) for f in fields(self)})

    def calls(self, threshold: float) -> np.ndarray:
        return self.probs >= threshold


class Estimator:
    """The accuracy estimates for a run (cxr.evaluation.accuracy_estimate): the second opinion fitted on the
    training split, and the labelled conditions of validation they are checked on."""

    def __init__(self, second_opinion, conditions: list, reference: Batch, threshold: float):
        self.second_opinion, self.conditions = second_opinion, conditions
        self.reference, self.threshold = reference, threshold

    @classmethod
    def for_run(cls, predictor: Predictor, split_file: Path, reference: Batch) -> "Estimator":
        from cxr.data.acquisition import VALIDATION_CHANGES
        from cxr.evaluation.stress import _perturbed_inputs
        from cxr.inference.population import BLOCK, population_features

        split = read_split_csv(split_file)
        train = predictor.load([r.path for r in split.part("train")])
        labels = {r.path: r.label for r in split.part("train")}
        second = accuracy_estimate.SecondOpinion(population_features().cached(train.images)[BLOCK],
                                                 np.array([labels[p] for p in train.paths]))
        t = predictor.threshold
        inputs, val_labels, _ = _perturbed_inputs(split_file, "val", predictor.preprocessing, ESTIMATE_IMAGES,
                                                  tuple(VALIDATION_CHANGES))
        estimator = cls(second, [], reference, t)
        estimator.conditions.append(estimator.condition("unchanged", reference))
        for name in VALIDATION_CHANGES:
            probs = predictor.predict(inputs[name])
            calls = second.calls(population_features()(inputs[name])[BLOCK])
            estimator.conditions.append(accuracy_estimate.Condition(
                name, (probs >= t) == val_labels.astype(bool), (probs >= t) == calls,
                accuracy_estimate.atc(reference.probs, reference.labels, probs, t)))
        return estimator

    def agreement(self, batch: Batch) -> np.ndarray:
        return batch.calls(self.threshold) == self.second_opinion.calls(batch.population)

    def condition(self, name: str, batch: Batch) -> "accuracy_estimate.Condition":
        return accuracy_estimate.Condition(name, batch.calls(self.threshold) == batch.labels.astype(bool),
                                           self.agreement(batch), self.atc(batch))

    def atc(self, batch: Batch) -> float:
        return accuracy_estimate.atc(self.reference.probs, self.reference.labels, batch.probs, self.threshold)

    def __call__(self, batch: Batch) -> dict:
        return accuracy_estimate.estimate(self.conditions, self.agreement(batch), self.atc(batch))


def _verdict(auc: float, guard_rate: float, rejected: list) -> tuple[str, str]:
    if auc >= DIFFERENT_AUC or guard_rate >= DIFFERENT_FLAGGED:
        return "different", (f"the model's features tell this folder from its training batch almost perfectly "
                             f"(domain classifier AUC {auc:.2f})" if auc >= DIFFERENT_AUC
                             else f"the guards flag {guard_rate:.0%} of the X-rays")
    if rejected:
        return "shifted", "unlike the training batch by " + ", ".join(rejected) + f" (family-wise {ALPHA:.0%})"
    return "same", f"no test tells it from the training batch at a family-wise {ALPHA:.0%}"


def _tests(reference: Batch, candidate: Batch, threshold: float, train_prevalence: float,
           validation_flagged: float) -> dict:
    """Every two-sample test of the two batches, and their p-values by name."""
    from scipy.stats import binomtest, ks_2samp

    feature_shift = {**shift_tests.domain_classifier(reference.penultimate, candidate.penultimate, reference.groups,
                                                     candidate.groups),
                     **shift_tests.mmd(reference.features, candidate.features)}
    ks = ks_2samp(reference.probs, candidate.probs, method="asymp")
    output_shift = {"ks": float(ks.statistic), "ks_p_value": float(ks.pvalue),
                    "predicted_prevalence": float(np.mean(candidate.calls(threshold))),
                    "validation_predicted_prevalence": float(np.mean(reference.calls(threshold))),
                    "training_prevalence": train_prevalence}
    expected = max(validation_flagged, 0.5 / max(len(reference.probs), 1))
    guard_p = binomtest(int(candidate.flagged.sum()), len(candidate.flagged), expected, alternative="greater").pvalue
    statistics = shift_tests.statistics_tests(reference.statistics, candidate.statistics)
    p_values = {"feature classifier": feature_shift["domain_classifier_p_value"],
                "feature MMD": feature_shift["mmd_p_value"], "outputs KS": output_shift["ks_p_value"],
                "guard rate": float(guard_p), **{f"{name} KS": s["p_value"] for name, s in statistics.items()}}
    return {"feature_shift": feature_shift, "output_shift": output_shift, "acquisition": statistics,
            "p_values": p_values}


def compare_batches(reference: Batch, candidate: Batch, threshold: float, train_prevalence: float,
                    validation_flagged: float, estimator: Estimator | None = None) -> dict:
    """Every test, the verdict and the accuracy estimates, for two batches (the reference labelled). Without an
    `estimator`, ATC alone."""
    if len(candidate.probs) < MIN_IMAGES:
        raise DataError(f"the folder has {len(candidate.probs)} readable X-rays; a batch check needs at least "
                        f"{MIN_IMAGES}")
    tests = _tests(reference, candidate, threshold, train_prevalence, validation_flagged)
    rejected = [name for name, p in tests["p_values"].items() if p < ALPHA / len(tests["p_values"])]  # Bonferroni
    guard_rate = float(candidate.flagged.mean())
    verdict, why = _verdict(tests["feature_shift"]["domain_classifier_auc"], guard_rate, rejected)
    result = {"verdict": verdict, "why": why, "images": int(len(candidate.probs)),
              "validation_images": int(len(reference.probs)), "guard_rate": guard_rate,
              "validation_guard_rate": validation_flagged, "alpha": ALPHA, **tests}
    if verdict == "different":
        result.update(estimated_accuracy=None, estimate=None,
                      estimate_note="cannot be estimated under this shift: another population or modality")
    elif estimator is None:
        result.update(estimated_accuracy=accuracy_estimate.atc(reference.probs, reference.labels, candidate.probs,
                                                               threshold), estimate=None,
                      estimate_note="ATC alone (Garg et al. 2022): it reads the model's confidence only")
    else:
        estimate = estimator(candidate)
        result.update(estimated_accuracy=estimate["estimated_accuracy"], estimate=estimate,
                      estimate_note=f"the lower of two estimates ({estimate['lead']} leads); {estimate['note']}")
    if candidate.labels is not None:
        result["accuracy"] = float(np.mean(candidate.calls(threshold) == candidate.labels.astype(bool)))
    return result


def _folder(folder: Path) -> tuple[list[Path], dict | None]:
    """The folder's image files, and their labels where its layout gives them (NORMAL/PNEUMONIA folders)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    try:
        records = discover(folder)
    except DataError:
        records = []
    if records:
        return [r.path for r in records], {r.path: r.label for r in records}
    files = image_files(folder)
    if not files:
        raise DataError(f"{folder}: no image files in this folder")
    return files, None


def site_check(folder: Path | None, run_dir: Path, out: Path | None = None, side: str | None = None) -> SiteCheck:
    """Writes site_check.json, site_check.md and a figure into `out` (default: the folder's name, or the side's,
    under the run's site_checks/), and returns the result. `side` (e.g. "test"): one side of the run's own split
    instead of a folder."""
    run_dir = Path(run_dir)
    predictor = Predictor(run_dir)
    split = read_split_csv(run_dir / "split.csv")
    if side is not None:
        records = split.part(side)
        if not records:
            raise DataError(f"{run_dir / 'split.csv'}: the split has no {side} side")
        files, labels, folder = [r.path for r in records], {r.path: r.label for r in records}, f"{run_dir}:{side}"
    else:
        files, labels = _folder(folder)
    loaded = predictor.load(files, use_cache=side is not None)
    if not len(loaded.paths):
        raise DataError(f"{folder}: none of its {len(files)} files could be read as an X-ray")
    val = predictor.load([r.path for r in split.part("val")])
    val_labels = {r.path: r.label for r in split.part("val")}
    reference = Batch.measured(predictor, val.images, val.paths, [val_labels[p] for p in val.paths])
    candidate = Batch.measured(predictor, loaded.images, loaded.paths, None if labels is None else
                               [labels[Path(p)] for p in loaded.paths])
    train_labels = [r.label for r in split.part("train")]
    validation_flagged = float(reference.flagged.mean())
    out = Path(out) if out else run_dir / "site_checks" / (side or Path(folder).resolve().name)
    result = SiteCheck.create({
        "folder": str(folder), "run": str(run_dir), "skipped": [(str(p), why) for p, why in loaded.skipped],
        **compare_batches(reference, candidate, predictor.threshold, float(np.mean(train_labels)), validation_flagged,
                          Estimator.for_run(predictor, run_dir / "split.csv", reference))}, out / SiteCheck.FILE)
    (out / "site_check.md").write_text(site_check_markdown(result))
    figures.site_check(reference.features, candidate.features, reference.probs, candidate.probs,
                       predictor.threshold, out / "site_check.png", result.verdict)
    return result
