"""Metrics, the validation-chosen operating threshold, and bootstrap confidence intervals."""

import numpy as np
from sklearn import metrics as skm

from cxr import CLASSES

MIN_SENSITIVITY = 0.975  # a screening operating point: missing pneumonia costs more than a second look
THRESHOLD_RULE = (
    f"highest specificity with sensitivity >= {MIN_SENSITIVITY} on the validation split "
    "(ties: highest sensitivity)"
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


CI_METRICS = ("accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc", "pr_auc")


def bootstrap_ci(labels, probs, threshold: float, n_boot: int = 1000, seed: int = 0) -> dict:
    """95% percentile intervals from resampling images with replacement."""
    labels, probs = np.asarray(labels).astype(int), np.asarray(probs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    samples = {name: [] for name in CI_METRICS}
    for _ in range(n_boot):
        idx = rng.integers(0, labels.size, labels.size)
        if labels[idx].min() == labels[idx].max():
            continue
        m = binary_metrics(labels[idx], probs[idx], threshold)
        for name in CI_METRICS:
            samples[name].append(m[name])
    return {
        name: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if v else [float("nan")] * 2
        for name, v in samples.items()
    }


def full_report(labels, probs, threshold: float, rule: str = THRESHOLD_RULE) -> dict:
    """Everything metrics.json holds: metrics at the chosen threshold, at 0.5, and their intervals."""
    report = binary_metrics(labels, probs, threshold)
    report["threshold_rule"] = rule
    report["at_0.5"] = binary_metrics(labels, probs, 0.5)
    report["ci95"] = bootstrap_ci(labels, probs, threshold)
    return report


def classification_report(labels, probs, threshold: float) -> str:
    predicted = (np.asarray(probs) >= threshold).astype(int)
    return skm.classification_report(labels, predicted, labels=[0, 1], target_names=list(CLASSES), digits=3,
                                     zero_division=0)


def evaluate_run(run_dir, data=None, out=None) -> dict:
    """Evaluate a run on its own test split, or on any labelled folder; writes metrics.json and figures."""
    import csv
    import time
    from pathlib import Path

    from cxr import figures
    from cxr.data.dataset import load_part
    from cxr.data.layout import discover
    from cxr.data.split import read_split_csv
    from cxr.run import load_run, write_json
    from cxr.train import predict_probs, read_history

    run_dir = Path(run_dir)
    model, info = load_run(run_dir)
    if data is None:
        records, source = read_split_csv(run_dir / "split.csv").part("test"), "the run's test split"
    else:
        records, source = discover(Path(data)), str(data)
    part, skipped, _ = load_part(records, info["size"], progress=True)
    if len(part.labels) == 0:
        raise SystemExit(f"no usable images to evaluate in {source}")
    predict_probs(model, part.images[:32])  # warm-up: graph tracing is not inference speed
    started = time.perf_counter()
    probs = predict_probs(model, part.images)
    speed = len(probs) / (time.perf_counter() - started)

    report = full_report(part.labels, probs, info["threshold"], info.get("threshold_rule", THRESHOLD_RULE))
    report.update(model=info["model"], data=source, predict_images_per_s=speed,
                  skipped=[[str(p), why] for p, why in skipped])
    out = Path(out) if out else run_dir / "metrics.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, report)
    with open(out.with_name(out.stem.replace("metrics", "predictions") + ".csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "label", "probability"])
        writer.writerows([str(p), int(y), f"{q:.6f}"] for p, y, q in zip(part.paths, part.labels, probs))

    fig_dir = out.parent / "figures"
    figures.confusion_matrix(report["confusion_matrix"], fig_dir / "confusion_matrix.png",
                             f"{info['model']}, threshold {report['threshold']:.3f}")
    figures.roc_curves({info["model"]: (part.labels, probs, report["threshold"])}, fig_dir / "roc.png",
                       f"ROC on {source}")
    if (run_dir / "history.csv").exists() and data is None:
        figures.training_curves(read_history(run_dir), fig_dir / "training_curves.png", f"{info['model']}:")
        figures.sample_images(part.images, part.labels, fig_dir / "samples.png")
    print(classification_report(part.labels, probs, report["threshold"]))
    return report
