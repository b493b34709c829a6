"""From a data folder to in-memory arrays for each side of a split: the one interface training uses."""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxr.data.cache import load_images
from cxr.data.layout import discover
from cxr.data.preprocess import Preprocessing
from cxr.data.split import Split, check_no_leak, make_split, write_split_csv

log = logging.getLogger(__name__)


@dataclass
class Part:
    images: np.ndarray  # (n, size, size, 1) uint8
    labels: np.ndarray  # (n,) int 0/1
    paths: list[Path]
    patients: list[str]  # one per image: bootstrap intervals resample patients, not images
    framings: np.ndarray | None = None  # (n,) which framed copy each row is (0: unchanged); None: all unchanged


@dataclass
class Prepared:
    split: Split
    parts: dict[str, Part]
    skipped: list[tuple[Path, str]]


def load_part(records, prep: Preprocessing, progress: bool = False) -> tuple[Part, list, dict]:
    loaded = load_images([r.path for r in records], prep, progress=progress)
    by_path = {r.path: r for r in records}
    labels = np.array([by_path[p].label for p in loaded.paths], dtype=np.int32)
    patients = [by_path[p].patient for p in loaded.paths]
    return Part(loaded.images[..., None], labels, loaded.paths, patients), loaded.skipped, loaded.keys


def prepare(
    data_dir: Path, mode: str, seed: int, prep: Preprocessing, fractions, run_dir: Path | None = None
) -> Prepared:
    """Discover, decode (through the cache), split by patient, and write split.csv into run_dir."""
    records = discover(data_dir)
    everything, skipped, keys = load_part(records, prep, progress=True)
    bad = {path for path, _ in skipped}
    split = make_split([r for r in records if r.path not in bad], mode, seed, fractions, content_keys=keys)
    check_no_leak(split, keys)
    if run_dir is not None:
        write_split_csv(split, Path(run_dir) / "split.csv")
    index = {path: i for i, path in enumerate(everything.paths)}
    parts = {}
    for side in ("train", "val", "test"):
        rows = [index[r.path] for r in split.part(side)]
        parts[side] = Part(everything.images[rows], everything.labels[rows], [everything.paths[i] for i in rows],
                           [everything.patients[i] for i in rows])
    for side, part in parts.items():
        log.info("%s: %d images (%d pneumonia)", side, len(part.labels), int(part.labels.sum()))
    return Prepared(split, parts, skipped)
