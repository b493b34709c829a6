"""Predict on files, folders (recursive) and globs: one row per image, bad files reported and skipped."""

import contextlib
import csv
import glob
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from cxr.data.images import decode
from cxr.data.layout import image_files
from cxr.files import written_aside
from cxr.inference.predictor import Predictor

log = logging.getLogger(__name__)
FIELDS = ["path", "probability", "label", "threshold", "ood", "ood_score", "feature_ood_score"]
SKIPPED_EXIT_CODE = 3  # some inputs could not be read; the rest were predicted


def expand_inputs(inputs) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files as given (any extension: DICOM often has none), image files under folders, glob matches."""
    files, missing = [], []
    for item in map(str, inputs):
        matches = sorted(glob.glob(item, recursive=True)) if glob.has_magic(item) else [item]
        if not matches:
            missing.append((Path(item), "no file matches this pattern"))
        for match in map(Path, matches):
            if match.is_dir():
                files += image_files(match)
            elif os.path.lexists(match):  # a file, or a broken link whose read reports the problem
                files.append(match)
            else:
                missing.append((match, "file not found"))
    return list(dict.fromkeys(files)), missing


def predict_batches(predictor: Predictor, files: list[Path], explain_dir: Path | None = None, batch: int = 256):
    """(rows, skipped) per batch of files, in input order: memory stays flat however many files there are."""
    for start in range(0, len(files), batch):
        loaded = predictor.load(files[start: start + batch], use_cache=False)
        rows, probs = result_rows(predictor, loaded.paths, loaded.images)
        if explain_dir is not None and len(loaded.paths):
            write_explanations(predictor, loaded.images, loaded.paths, probs, explain_dir)
        yield rows, loaded.skipped


def predict_paths(predictor: Predictor, inputs, explain_dir: Path | None = None):
    """Rows (dicts) for every readable image, and (path, reason) for every skipped one."""
    files, skipped = expand_inputs(inputs)
    rows = []
    for found, bad in predict_batches(predictor, files, explain_dir):
        rows += found
        skipped += bad
    return rows, skipped


def result_rows(predictor: Predictor, paths, images) -> tuple[list[dict], np.ndarray]:
    """One row per preprocessed image: probability, label, threshold, and the out-of-distribution check."""
    probs = predictor.predict(images)
    scores, flags = predictor.out_of_distribution(images)
    feature_scores, feature_flags = predictor.feature_out_of_distribution(images)
    # `ood`: either guard fired (None where the run has neither).
    either = [f for f in (flags, feature_flags) if f is not None]
    ood = np.logical_or.reduce(either) if either else None
    rows = [{"path": str(path), "probability": round(float(prob), 6), "label": predictor.label(prob),
             "threshold": round(predictor.threshold, 6),
             "ood": None if ood is None else bool(ood[i]),
             "ood_score": None if scores is None else round(float(scores[i]), 4),
             "feature_ood_score": None if feature_scores is None else round(float(feature_scores[i]), 4)}
            for i, (path, prob) in enumerate(zip(paths, probs))]
    return rows, probs


def write_explanations(predictor: Predictor, images, paths, probs, out_dir: Path) -> None:
    from cxr.inference.explain import overlay_png

    cam = predictor.explainer()
    out_dir.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(images), 32):
        found = cam.explain(images[i: i + 32], called=probs[i: i + 32] >= predictor.threshold)
        for j, (path, prob) in enumerate(zip(paths[i: i + 32], probs[i: i + 32])):
            display = decode(Path(path).read_bytes(), predictor.preprocessing.at_size(384))
            target = _unique(out_dir / f"{Path(path).stem}_cam.png")
            overlay_png(display, found.heatmaps[j], target,
                        f"{Path(path).name}: P(pneumonia) = {prob:.3f} -> {predictor.label(prob)} "
                        f"(threshold {predictor.threshold:.3f})", found.caption(j), bool(found.blank[j]), cam.title)
            if found.blank[j]:
                print(f"{path}: {found.caption(j)}; {target} says so instead of a map", file=sys.stderr)


def _unique(path: Path) -> Path:
    """Never overwrite: a second image with the same name gets a numbered file."""
    n, candidate = 1, path
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")
    return candidate


@contextlib.contextmanager
def open_output(out: Path | None):
    """A binary stream: standard output, or a file written aside and renamed only when complete."""
    if out is None:
        sys.stdout.flush()
        yield sys.stdout.buffer
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    with written_aside(out) as tmp, open(tmp, "wb") as stream:
        yield stream


class RowWriter:
    """Rows written as they come, as CSV or as one JSON list (the same text json.dumps(rows, indent=2) gives).

    File names that are not valid UTF-8 are written back as the bytes they were.
    """

    def __init__(self, stream, fmt: str):
        self.stream, self.fmt, self.count = stream, fmt, 0
        if fmt == "csv":
            self._csv = csv.DictWriter(self, fieldnames=FIELDS, lineterminator="\n")
            self._csv.writeheader()

    def write(self, text: str) -> None:  # the csv module writes through this
        self.stream.write(text.encode("utf-8", "surrogateescape"))

    def rows(self, rows: list[dict]) -> None:
        for row in rows:
            if self.fmt == "csv":
                self._csv.writerow(row)
            else:
                item = json.dumps(row, indent=2).replace("\n", "\n  ")
                self.write(("[\n  " if self.count == 0 else ",\n  ") + item)
            self.count += 1

    def close(self) -> None:
        if self.fmt == "json":
            self.write("\n]\n" if self.count else "[]\n")
        self.stream.flush()
