"""Predict on files, folders (recursive) and globs: one row per image, bad files reported and skipped."""

import csv
import glob
import io
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from cxr.data.images import decode
from cxr.data.layout import image_files
from cxr.engines import Predictor

log = logging.getLogger(__name__)
FIELDS = ["path", "probability", "label", "threshold", "ood", "ood_score"]
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


def predict_paths(predictor: Predictor, inputs, explain_dir: Path | None = None, batch: int = 256):
    """Rows (dicts) for every readable image, and (path, reason) for every skipped one."""
    files, skipped = expand_inputs(inputs)
    for path, reason in skipped:  # unreadable files are reported by the loader, one line each
        log.warning("skipped %s: %s", path, reason)
    rows = []
    progress = None
    if len(files) > batch:
        import keras

        progress = keras.utils.Progbar(len(files), unit_name="image")
    for start in range(0, len(files), batch):
        loaded = predictor.load(files[start: start + batch], use_cache=False)
        skipped += loaded.skipped
        found, probs = result_rows(predictor, loaded.paths, loaded.images)
        rows += found
        if explain_dir is not None and len(loaded.paths):
            write_explanations(predictor, loaded.images, loaded.paths, probs, explain_dir)
        if progress is not None:
            progress.update(min(start + batch, len(files)))
    return rows, skipped


def result_rows(predictor: Predictor, paths, images) -> tuple[list[dict], np.ndarray]:
    """One row per preprocessed image: probability, label, threshold, and the out-of-distribution check."""
    probs = predictor.predict(images)
    scores, flags = predictor.out_of_distribution(images)
    rows = [{"path": str(path), "probability": round(float(prob), 6), "label": predictor.label(prob),
             "threshold": round(predictor.threshold, 6),
             "ood": None if flags is None else bool(flags[i]),
             "ood_score": None if scores is None else round(float(scores[i]), 4)}
            for i, (path, prob) in enumerate(zip(paths, probs))]
    return rows, probs


def write_explanations(predictor: Predictor, images, paths, probs, out_dir: Path) -> None:
    from cxr.explain import HiResCam, overlay_png

    cam = HiResCam(predictor.explained_model())
    out_dir.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(images), 32):
        found = cam.explain(images[i: i + 32], predictor.threshold)
        for j, (path, prob) in enumerate(zip(paths[i: i + 32], probs[i: i + 32])):
            display = decode(Path(path).read_bytes(), predictor.preprocessing.at_size(384))
            target = _unique(out_dir / f"{Path(path).stem}_cam.png")
            overlay_png(display, found.heatmaps[j], target,
                        f"{Path(path).name}: P(pneumonia) = {prob:.3f} -> {predictor.label(prob)} "
                        f"(threshold {predictor.threshold:.3f})", found.caption(j), bool(found.blank[j]))
            if found.blank[j]:
                print(f"{path}: {found.caption(j)}; {target} says so instead of a map", file=sys.stderr)


def _unique(path: Path) -> Path:
    """Never overwrite: a second image with the same name gets a numbered file."""
    n, candidate = 1, path
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")
    return candidate


def format_rows(rows, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
