"""Evaluate a finished run on its own test split, or on any labelled folder: metrics.json, predictions, figures."""

import csv
import time
from pathlib import Path

import numpy as np

from cxr import figures
from cxr.data.dataset import load_part
from cxr.data.layout import discover
from cxr.data.split import read_split_csv
from cxr.errors import DataError
from cxr.evaluation.metrics import calibration, classification_report, full_report
from cxr.inference.predictor import Predictor
from cxr.runs.folder import read_history
from cxr.runs.results import Metrics


def evaluate_run(run_dir, data=None, out=None, threshold: float | None = None, precision: str = "auto") -> Metrics:
    """Metrics at the run's validation threshold, or at `threshold` when the caller wants another one."""
    run_dir = Path(run_dir)
    predictor = Predictor(run_dir, threshold=threshold, precision=precision)
    info = predictor.info
    rule = info.threshold_rule if threshold is None else "given by the user (--threshold)"
    if data is None:
        records, source = read_split_csv(run_dir / "split.csv").part("test"), "the run's test split"
    else:
        records, source = discover(Path(data)), str(data)
    part, skipped, _ = load_part(records, predictor.preprocessing, progress=True)
    if len(part.labels) == 0:
        raise DataError(f"no usable images to evaluate in {source}")
    predictor.predict(part.images[:32])  # warm-up: graph tracing is not inference speed
    started = time.perf_counter()
    probs = predictor.predict(part.images, recompute=True)  # timed: not outputs known from an earlier step
    speed = len(probs) / (time.perf_counter() - started)

    out = Path(out) if out else run_dir / Metrics.FILE
    report = Metrics.create({
        **full_report(part.labels, probs, predictor.threshold, rule, groups=_patient_groups(part)),
        "calibration": calibration(part.labels, probs), "ood_flagged": flag_rates(predictor, part.images),
        "model": info.model, "data": source, "predict_images_per_s": speed, "compute_precision": predictor.precision,
        "skipped": [(str(p), why) for p, why in skipped]}, out)
    with open(out.with_name(out.stem.replace("metrics", "predictions") + ".csv"), "w", newline="",
              encoding="utf-8", errors="surrogateescape") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "label", "probability"])
        writer.writerows([str(p), int(y), f"{q:.6f}"] for p, y, q in zip(part.paths, part.labels, probs))

    fig_dir = out.parent / "figures"
    figures.confusion_matrix(report.confusion_matrix, fig_dir / "confusion_matrix.png",
                             f"{info.model}, threshold {report.threshold:.3f}")
    figures.roc_curves({info.model: (part.labels, probs, report.threshold)}, fig_dir / "roc.png",
                       f"ROC on {source}")
    figures.reliability(part.labels, probs, fig_dir / "reliability.png", f"{info.model} on {source}")
    if (run_dir / "history.csv").exists() and data is None:
        figures.training_curves(read_history(run_dir), fig_dir / "training_curves.png", f"{info.model}:")
        figures.sample_images(part.images, part.labels, fig_dir / "samples.png")
    print(classification_report(part.labels, probs, report.threshold))
    return report


def flag_rates(predictor: Predictor, images) -> dict:
    """The share of images each out-of-distribution guard flags, and either (None: the run lacks that guard)."""
    flags = {"pixel": predictor.out_of_distribution(images)[1],
             "feature": predictor.feature_out_of_distribution(images)[1]}
    present = [f for f in flags.values() if f is not None]
    flags["either"] = np.logical_or.reduce(present) if present else None
    return {name: None if f is None else float(np.mean(f)) for name, f in flags.items()}


def _patient_groups(part) -> list[str] | None:
    """Patients for the bootstrap; None (resample images) where no file name carried a patient id."""
    named = any(patient != Path(path).stem.lower() for patient, path in zip(part.patients, part.paths))
    return part.patients if named else None
