"""Stress test: a run's test split under acquisition-like changes, each applied to the decoded X-ray
before the run's own preprocessing, as a different scanner or hospital would change it.

Photometric changes alter grey levels, sharpness or noise; geometric changes alter framing and shape.
The same changes on the validation split give the robustness that model selection may use.
"""

import hashlib
from pathlib import Path

import numpy as np

from cxr import figures
from cxr.data.acquisition import VALIDATION_CHANGES, recompressed, resampled
from cxr.data.framing import crop_borders
from cxr.data.images import read_grayscale
from cxr.data.pixels import ImageError
from cxr.data.split import read_split_csv
from cxr.errors import UsageError
from cxr.evaluation.metrics import binary_metrics
from cxr.evaluation.probe import shortcut_probe
from cxr.inference.predictor import Predictor
from cxr.runs.results import Stress


def _gamma(g):
    return lambda im: (255.0 * (im / 255.0) ** g).round().astype(np.uint8)


def _linear(scale, shift):
    return lambda im: np.clip((im.astype(np.float32) - 128.0) * scale + 128.0 + shift, 0, 255).astype(np.uint8)


def _cv2(name, *args, **kwargs):
    def apply(im):
        import cv2

        return getattr(cv2, name)(im, *args, **kwargs)
    return apply


def _noise(sigma):
    def apply(im):
        rng = np.random.default_rng(im.size)  # deterministic per image size: repeatable runs
        return np.clip(im + rng.normal(0, sigma, im.shape), 0, 255).astype(np.uint8)
    return apply


def _add_border(share):
    def apply(im):
        h, w = im.shape
        dy, dx = int(share * h), int(share * w)
        return np.pad(im, ((dy, dy), (dx, dx)))
    return apply


def _crop_border(share):
    return lambda im: crop_borders(im, share)


def _width(scale):
    def apply(im):
        import cv2

        return cv2.resize(im, (max(8, int(im.shape[1] * scale)), im.shape[0]), interpolation=cv2.INTER_AREA)
    return apply


def _rotate(degrees):
    def apply(im):
        import cv2

        h, w = im.shape
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
        return cv2.warpAffine(im, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    return apply


PERTURBATIONS = {
    "gamma_0.6": ("photometric", _gamma(0.6)),
    "gamma_1.6": ("photometric", _gamma(1.6)),
    "contrast_+30%": ("photometric", _linear(1.3, 0)),
    "contrast_-30%": ("photometric", _linear(0.7, 0)),
    "brightness_+20%": ("photometric", _linear(1.0, 51)),
    "brightness_-20%": ("photometric", _linear(1.0, -51)),
    "histogram_equalization": ("photometric", _cv2("equalizeHist")),
    "jpeg_quality_30": ("photometric", lambda im: recompressed(im, 30)),
    "gaussian_blur": ("photometric", _cv2("GaussianBlur", (0, 0), 1.5)),
    "gaussian_noise": ("photometric", _noise(8.0)),
    "downscale_upscale_x2": ("photometric", lambda im: resampled(im, 2, "linear")),
    "black_borders_10%": ("geometric", _add_border(0.10)),
    "borders_cropped_10%": ("geometric", _crop_border(0.10)),
    "borders_cropped_20%": ("geometric", _crop_border(0.20)),
    "width_stretched_25%": ("geometric", _width(1.25)),
    "width_shrunk_25%": ("geometric", _width(0.75)),
    "rotation_5deg": ("geometric", _rotate(5.0)),
    # The held-out acquisition families the validation rule reads (cxr.data.acquisition).
    **{name: ("acquisition", change) for name, change in VALIDATION_CHANGES.items()},
}
TEXT_PROBE = "burned_in_text"
SHOWN = ("roc_auc", "accuracy", "sensitivity", "specificity")


def _sample(records: list, limit: int | None) -> list:
    """At most `limit` records, drawn at random (fixed seed) within each class in proportion to its size."""
    if limit is None or len(records) <= limit:
        return records
    rng = np.random.default_rng(0)
    chosen = []
    for label in sorted({r.label for r in records}):
        members = [r for r in records if r.label == label]
        take = round(limit * len(members) / len(records))
        chosen += [members[i] for i in sorted(rng.choice(len(members), take, replace=False))]
    return chosen


def _perturbed_inputs(split_file: Path, side: str, prep, limit: int | None, changes: tuple[str, ...]):
    """Every changed version of one side's images after `prep` (inputs by change), with labels and patients.

    Runs that share a split and a preprocessing (the seed's three models do) see the same inputs: the last
    two results (a run's test and validation sides) are kept, so stress-testing such runs one after another
    changes and preprocesses each side's images once.
    """
    key = (hashlib.sha256(Path(split_file).read_bytes()).hexdigest(), side, prep, limit, changes)
    if key not in _LAST_INPUTS:
        originals, labels, patients = [], [], []
        for record in _sample(read_split_csv(split_file).part(side), limit):
            try:
                originals.append(read_grayscale(Path(record.path).read_bytes(), prep.size))
            except (OSError, ImageError):
                continue  # skipped at training time as well
            labels.append(record.label)
            patients.append(record.patient)
        inputs = {name: np.stack([prep.apply(change(im) if change else im) for im in originals])
                  for name, change in [("none", None)] + [(n, PERTURBATIONS[n][1]) for n in changes]}
        for images in inputs.values():  # read-only: a model scores each array once (an ensemble after its members)
            images.flags.writeable = False
        if len(_LAST_INPUTS) >= 2:  # the inputs of a side take up to a few hundred MB: keep two
            del _LAST_INPUTS[next(iter(_LAST_INPUTS))]
        _LAST_INPUTS[key] = inputs, np.array(labels), patients
    return _LAST_INPUTS[key]


_LAST_INPUTS: dict = {}


def stress_run(run_dir: Path, side: str = "test", engine: str = "keras", predictor: Predictor | None = None,
               images: int | None = None, changes: list[str] | None = None) -> Stress:
    """Every perturbation (or those named in `changes`) on one side of the run's split (or on `images` of its
    images, drawn within each class). The test side writes RUN/stress.json and a figure; the validation side
    (RUN/stress_val.json) is what model selection may look at."""
    run_dir = Path(run_dir)
    if changes == ["selection"]:  # the conditions the selection rule reads
        from cxr.evaluation.selection import CONDITIONS

        changes = list(CONDITIONS[1:])
    unknown = set(changes or ()) - set(PERTURBATIONS)
    if unknown:
        raise UsageError(f"unknown stress changes {sorted(unknown)}; known: {', '.join(PERTURBATIONS)}")
    changes = tuple(changes or PERTURBATIONS)
    predictor = predictor or Predictor(run_dir, engine=engine)
    inputs, labels, patients = _perturbed_inputs(run_dir / "split.csv", side, predictor.preprocessing, images,
                                                 changes)

    probs = {}

    def scored(name) -> dict:
        probs[name] = predictor.predict(inputs[name])
        m = binary_metrics(labels, probs[name], predictor.threshold)
        return {key: m[key] for key in SHOWN}

    baseline = scored("none")
    perturbations = {}
    for name in changes:
        metrics = scored(name)
        perturbations[name] = {"kind": PERTURBATIONS[name][0], **metrics,
                               "roc_auc_change": metrics["roc_auc"] - baseline["roc_auc"],
                               "normal_flipped": normal_flips(labels, probs["none"], probs[name], predictor.threshold)}
    photometric = [p["roc_auc_change"] for p in perturbations.values() if p["kind"] == "photometric"]
    result = Stress.create({
        "run": str(run_dir), "side": side, "images": int(len(labels)), "sampled": images is not None,
        "precision": predictor.precision, "threshold": predictor.threshold, "preprocessing": predictor.preprocessing,
        "baseline": baseline, "perturbations": perturbations,
        "text_probe": {"change": TEXT_PROBE, **perturbations[TEXT_PROBE]["normal_flipped"]}
        if TEXT_PROBE in perturbations else None,
        "shortcut_probe_auc": shortcut_probe(inputs["none"], labels, patients),
        "worst_photometric_auc_change": min(photometric, default=None),
        "mean_roc_auc": float(np.mean([baseline["roc_auc"]] + [p["roc_auc"] for p in perturbations.values()]))},
        Stress.path(run_dir, side))
    if side == "test":
        figures.stress_chart(result, run_dir / "figures" / "stress.png")
    return result


def normal_flips(labels, before, after, threshold: float) -> dict:
    """Among NORMAL X-rays called NORMAL unchanged: the share a change turns into PNEUMONIA calls, and the mean
    change of their probability (the burned-in text probe reads it on the text family)."""
    called_normal = (np.asarray(labels) == 0) & (before < threshold)
    if not called_normal.any():
        return {"normal_called_normal": 0, "flipped_to_pneumonia": None, "mean_probability_change": None}
    return {"normal_called_normal": int(called_normal.sum()),
            "flipped_to_pneumonia": float(np.mean(after[called_normal] >= threshold)),
            "mean_probability_change": float(np.mean(after[called_normal] - before[called_normal]))}


def stress_table(result: Stress) -> str:
    lines = ["| change | kind | ROC AUC | ΔAUC | accuracy | sensitivity | specificity | NORMAL flipped |",
             "|---|---|---|---|---|---|---|---|"]
    for name, p in {"none": result.baseline, **result.perturbations}.items():
        change = "" if p.roc_auc_change is None else f"{p.roc_auc_change:+.3f}"
        flipped = p.normal_flipped.flipped_to_pneumonia if p.normal_flipped else None  # older results lack it
        lines.append(f"| {name} | {p.kind} | {p.roc_auc:.3f} | {change} | {p.accuracy:.3f} "
                     f"| {p.sensitivity:.3f} | {p.specificity:.3f} | "
                     f"{'' if flipped is None else f'{flipped:.3f}'} |")
    return "\n".join(lines) + "\n"
