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

from pathlib import Path

import numpy as np

from cxr import figures
from cxr.data.layout import discover, image_files, patient_id
from cxr.data.split import read_split_csv
from cxr.errors import DataError
from cxr.evaluation.probe import global_statistics
from cxr.inference.predictor import Predictor
from cxr.runs.folder import write_json

ALPHA = 0.01  # family-wise false-alarm rate of `shifted` on a batch of the training batch
DIFFERENT_AUC, DIFFERENT_FLAGGED = 0.90, 0.50
MIN_IMAGES = 10  # fewer: no batch test means anything
PERMUTATIONS, MMD_SAMPLE, COMPONENTS, NULL_SHUFFLES = 200, 400, 32, 30
STATISTICS = ("mean", "std", "p5", "border_mean", "sharpness", "corner_marks", "lung_height", "lung_width")


class Batch:
    """One batch's model outputs, features, guard flags and acquisition statistics."""

    def subset(self, rows) -> "Batch":
        """The same batch restricted to `rows` (indices)."""
        part = Batch.__new__(Batch)
        part.paths, part.groups = [self.paths[i] for i in rows], [self.groups[i] for i in rows]
        part.labels = None if self.labels is None else self.labels[rows]
        part.probs, part.features, part.flagged = self.probs[rows], self.features[rows], self.flagged[rows]
        part.penultimate = self.penultimate[rows]
        part.statistics = {k: v[rows] for k, v in self.statistics.items()}
        return part

    def __init__(self, predictor: Predictor, images: np.ndarray, paths: list, labels=None):
        self.paths, self.labels = list(paths), None if labels is None else np.asarray(labels)
        self.groups = [patient_id(Path(p).name) for p in self.paths]
        self.probs = predictor.predict(images)
        blocks = predictor.features(images)
        self.penultimate = blocks["penultimate"]
        self.features = np.concatenate([blocks["penultimate"], blocks["intermediate"]], axis=1)
        flags = [f for f in (predictor.out_of_distribution(images)[1], predictor.feature_out_of_distribution(images)[1])
                 if f is not None]
        self.flagged = np.logical_or.reduce(flags) if flags else np.zeros(len(images), bool)
        self.statistics = acquisition_statistics(images)


def acquisition_statistics(images: np.ndarray) -> dict:
    import cv2

    from cxr.data.thorax import framing_features

    images = np.asarray(images).reshape(len(images), images.shape[1], images.shape[2])
    stats = global_statistics(images)
    size, corner = images.shape[1], max(2, images.shape[1] // 8)
    sharpness = [float(cv2.Laplacian(im, cv2.CV_32F).var()) for im in images]
    # Burned-in annotations: near-white pixels in the four corners, where consoles print them.
    corners = np.concatenate([images[:, :corner, :corner], images[:, :corner, -corner:], images[:, -corner:, :corner],
                              images[:, -corner:, -corner:]], axis=1).reshape(len(images), -1)
    framing, _ = framing_features(images)
    return {"mean": stats[:, 4], "std": stats[:, 5], "p5": stats[:, 1], "border_mean": stats[:, 2],
            "sharpness": np.array(sharpness), "corner_marks": (corners >= 240).mean(axis=1) * (size > 0),
            "lung_height": framing[:, 2], "lung_width": framing[:, 3]}


def _domain_classifier(reference: Batch, candidate: Batch, seed: int = 0) -> dict:
    """Cross-validated ROC AUC of a classifier told to tell the batches apart, and its p-value against the same
    classifier on shuffled batch labels (a normal fit to NULL_SHUFFLES shuffles: out-of-fold scores are not
    independent, so a rank test on them alone rejects too often)."""
    from scipy.stats import norm
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([reference.penultimate, candidate.penultimate])
    y = np.r_[np.zeros(len(reference.probs)), np.ones(len(candidate.probs))].astype(int)
    groups = np.array([f"r{g}" for g in reference.groups] + [f"c{g}" for g in candidate.groups])
    folds = min(5, int(np.bincount(y).min()))
    model = make_pipeline(StandardScaler(), PCA(min(COMPONENTS, x.shape[1], len(x) // 2), random_state=0),
                          LogisticRegression(max_iter=2000, C=0.1))

    def auc(labels):
        cv = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
        scores = cross_val_predict(model, x, labels, groups=groups, method="predict_proba", cv=cv)[:, 1]
        return roc_auc_score(labels, scores)

    observed = auc(y)
    rng = np.random.default_rng(seed)
    null = [auc(rng.permutation(y)) for _ in range(NULL_SHUFFLES)]
    p = norm.sf((observed - np.mean(null)) / max(np.std(null, ddof=1), 1e-3))
    return {"domain_classifier_auc": float(observed), "domain_classifier_p_value": float(p)}


def _mmd(reference: Batch, candidate: Batch, seed: int = 0) -> dict:
    """Unbiased MMD^2 with an RBF kernel at the median distance, and its permutation p-value."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    a, b = (f[rng.permutation(len(f))[:MMD_SAMPLE]] for f in (reference.features, candidate.features))
    x = np.concatenate([a, b])
    x = PCA(min(COMPONENTS, x.shape[1], len(x) - 1), random_state=0).fit_transform(StandardScaler().fit_transform(x))
    squared = np.maximum(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1), 0)
    kernel = np.exp(-squared / np.median(squared[squared > 0]))
    n = len(a)

    def statistic(order):
        k = kernel[np.ix_(order, order)]
        kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
        m = len(order) - n
        return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                - 2 * kxy.mean())

    observed = statistic(np.arange(len(x)))
    null = [statistic(rng.permutation(len(x))) for _ in range(PERMUTATIONS)]
    p = (1 + np.sum(np.array(null) >= observed)) / (1 + PERMUTATIONS)
    return {"mmd2": float(observed), "mmd_p_value": float(p)}


def _margin(probs, threshold: float) -> np.ndarray:
    clip = np.clip(np.asarray(probs, np.float64), 1e-7, 1 - 1e-7)
    t = np.clip(threshold, 1e-7, 1 - 1e-7)
    return np.abs(np.log(clip / (1 - clip)) - np.log(t / (1 - t)))


def estimated_accuracy(reference: Batch, candidate: Batch, threshold: float) -> float:
    """ATC: the margin cut above which validation holds its accuracy's share of X-rays, applied to the folder."""
    accuracy = float(np.mean((reference.probs >= threshold) == reference.labels.astype(bool)))
    cut = np.quantile(_margin(reference.probs, threshold), 1 - accuracy)
    return float(np.mean(_margin(candidate.probs, threshold) > cut))


def compare_batches(reference: Batch, candidate: Batch, threshold: float, train_prevalence: float,
                    validation_flagged: float) -> dict:
    """Every test and the verdict, for two batches (the reference labelled)."""
    from scipy.stats import binomtest, ks_2samp

    if len(candidate.probs) < MIN_IMAGES:
        raise DataError(f"the folder has {len(candidate.probs)} readable X-rays; a batch check needs at least "
                        f"{MIN_IMAGES}")
    feature_shift = {**_domain_classifier(reference, candidate), **_mmd(reference, candidate)}
    ks = ks_2samp(reference.probs, candidate.probs, method="asymp")
    output_shift = {"ks": float(ks.statistic), "ks_p_value": float(ks.pvalue),
                    "predicted_prevalence": float(np.mean(candidate.probs >= threshold)),
                    "validation_predicted_prevalence": float(np.mean(reference.probs >= threshold)),
                    "training_prevalence": train_prevalence}
    guard_rate = float(candidate.flagged.mean())
    expected = max(validation_flagged, 0.5 / max(len(reference.probs), 1))
    guard_p = binomtest(int(candidate.flagged.sum()), len(candidate.flagged), expected, alternative="greater").pvalue
    statistics = {}
    for name in STATISTICS:
        test = ks_2samp(reference.statistics[name], candidate.statistics[name], method="asymp")
        statistics[name] = {"validation_median": float(np.median(reference.statistics[name])),
                            "folder_median": float(np.median(candidate.statistics[name])),
                            "ks": float(test.statistic), "p_value": float(test.pvalue)}
    p_values = {"feature classifier": feature_shift["domain_classifier_p_value"],
                "feature MMD": feature_shift["mmd_p_value"], "outputs KS": output_shift["ks_p_value"],
                "guard rate": float(guard_p), **{f"{name} KS": s["p_value"] for name, s in statistics.items()}}
    rejected = [name for name, p in p_values.items() if p < ALPHA / len(p_values)]  # Bonferroni
    auc = feature_shift["domain_classifier_auc"]
    if auc >= DIFFERENT_AUC or guard_rate >= DIFFERENT_FLAGGED:
        verdict = "different"
        why = (f"the model's features tell this folder from its training batch almost perfectly (domain classifier "
               f"AUC {auc:.2f})" if auc >= DIFFERENT_AUC else f"the guards flag {guard_rate:.0%} of the X-rays")
    elif rejected:
        verdict, why = "shifted", "unlike the training batch by " + ", ".join(rejected) + f" (family-wise {ALPHA:.0%})"
    else:
        verdict, why = "same", f"no test tells it from the training batch at a family-wise {ALPHA:.0%}"
    result = {"verdict": verdict, "why": why, "images": int(len(candidate.probs)),
              "validation_images": int(len(reference.probs)), "feature_shift": feature_shift,
              "output_shift": output_shift, "guard_rate": guard_rate, "validation_guard_rate": validation_flagged,
              "p_values": p_values, "alpha": ALPHA, "acquisition": statistics}
    if verdict == "different":
        result["estimated_accuracy"] = None
        result["estimate_note"] = "cannot be estimated under this shift: another population or modality"
    else:
        result["estimated_accuracy"] = estimated_accuracy(reference, candidate, threshold)
        result["estimate_note"] = ("ATC (Garg et al. 2022): assumes the shift keeps the link between a call's margin "
                                   "from the threshold and its correctness as on validation")
    if candidate.labels is not None:
        result["accuracy"] = float(np.mean((candidate.probs >= threshold) == candidate.labels.astype(bool)))
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


def site_check(folder: Path | None, run_dir: Path, out: Path | None = None, side: str | None = None) -> dict:
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
    reference = Batch(predictor, val.images, val.paths, [val_labels[p] for p in val.paths])
    candidate = Batch(predictor, loaded.images, loaded.paths, None if labels is None else
                      [labels[Path(p)] for p in loaded.paths])
    train_labels = [r.label for r in split.part("train")]
    validation_flagged = float(reference.flagged.mean())
    result = {"folder": str(folder), "run": str(run_dir), "skipped": [[str(p), why] for p, why in loaded.skipped],
              **compare_batches(reference, candidate, predictor.threshold, float(np.mean(train_labels)),
                                validation_flagged)}
    out = Path(out) if out else run_dir / "site_checks" / (side or Path(folder).resolve().name)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "site_check.json", result)
    (out / "site_check.md").write_text(site_check_markdown(result))
    figures.site_check(reference.features, candidate.features, reference.probs, candidate.probs,
                       predictor.threshold, out / "site_check.png", result["verdict"])
    return result


def site_check_markdown(r: dict) -> str:
    f, o = r["feature_shift"], r["output_shift"]
    estimate = "n/a" if r["estimated_accuracy"] is None else f"{r['estimated_accuracy']:.3f}"
    lines = [f"# Site check: {r['folder']} against {r['run']}", "", f"**Verdict: {r['verdict']}**: {r['why']}.", "",
             f"{r['images']} X-rays in the folder ({len(r['skipped'])} skipped), {r['validation_images']} in the "
             "run's validation split (the reference: the training batch, unseen in training).", "",
             "| test | value | p-value |", "|---|---|---|",
             f"| domain classifier on the model's penultimate features (ROC AUC) | {f['domain_classifier_auc']:.3f} "
             f"| {f['domain_classifier_p_value']:.2g} |",
             f"| MMD² on the model's features | {f['mmd2']:.4f} | {f['mmd_p_value']:.2g} |",
             f"| KS on the calibrated probabilities | {o['ks']:.3f} | {o['ks_p_value']:.2g} |",
             f"| X-rays the guards flag | {r['guard_rate']:.1%} (validation {r['validation_guard_rate']:.1%}) "
             f"| {r['p_values']['guard rate']:.2g} |", "",
             f"Predicted PNEUMONIA: {o['predicted_prevalence']:.1%} of the folder, "
             f"{o['validation_predicted_prevalence']:.1%} of validation (training prevalence "
             f"{o['training_prevalence']:.1%}).", "",
             f"Estimated accuracy: {estimate} ({r['estimate_note']})"
             + (f"; measured on the folder's labels: {r['accuracy']:.3f}" if "accuracy" in r else "") + ".", "",
             "| acquisition statistic (model input) | validation median | folder median | KS | p-value |",
             "|---|---|---|---|---|"]
    lines += [f"| {name} | {s['validation_median']:.3g} | {s['folder_median']:.3g} | {s['ks']:.2f} "
              f"| {s['p_value']:.2g} |" for name, s in r["acquisition"].items()]
    lines += ["", "What it cannot do: prove the model right on this site. Only a labelled sample of the site's "
              "X-rays can; `same` means no test found a difference, not that the answers are correct.", ""]
    return "\n".join(lines)
