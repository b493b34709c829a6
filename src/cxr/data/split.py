"""Patient-grouped, class-stratified, seeded train/val/test splits, written as split.csv.

Two modes:
- official: keep the given test/ folder; carve validation out of train (+ the tiny given val) by patient.
  Without a test/ folder, test is carved out of train by patient as well.
- pooled: pool every image and re-split by patient, 70/15/15 by default (the seed's redistribution).
"""

import csv
import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from cxr.data.layout import Record
from cxr.errors import DataError

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


class LeakError(DataError, ValueError):
    """A patient (or a byte-identical image) sits on two sides of a split."""


@dataclass(frozen=True)
class Split:
    rows: list[tuple[Record, str]]  # (record, "train" | "val" | "test")
    note: str  # how the split was made, in words, for the run summary

    def part(self, name: str) -> list[Record]:
        return [record for record, side in self.rows if side == name]


def _groups(records: list[Record], content_keys: dict | None) -> dict[str, list[Record]]:
    """Group images by patient, merging patients that share a byte-identical file."""
    parent: dict[str, str] = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    if content_keys:
        first_patient_of = {}
        for record in records:
            key = content_keys.get(record.path)
            if key is None:
                continue
            if key in first_patient_of:
                parent[find(record.patient)] = find(first_patient_of[key])
            else:
                first_patient_of[key] = record.patient
    groups = defaultdict(list)
    for record in records:
        groups[find(record.patient)].append(record)
    return groups


def _carve(records, fractions: dict[str, float], seed: int, content_keys) -> dict[str, list[Record]]:
    """Assign whole patient groups to sides, per class, until each side holds its fraction of images."""
    out = {name: [] for name in fractions}
    groups = _groups(records, content_keys)
    by_class = defaultdict(list)
    for _, members in sorted(groups.items()):
        by_class[members[0].label].append(members)
    rng = random.Random(seed)
    for label in sorted(by_class):
        class_groups = by_class[label]
        rng.shuffle(class_groups)
        total = sum(len(g) for g in class_groups)
        # Smaller sides first, so rounding leaves the remainder to the largest (train).
        order = sorted(fractions, key=lambda name: fractions[name])
        targets = {name: fractions[name] * total for name in order}
        side_index, filled = 0, 0
        for group in class_groups:
            while side_index < len(order) - 1 and filled >= targets[order[side_index]]:
                side_index, filled = side_index + 1, 0
            out[order[side_index]].extend(group)
            filled += len(group)
    return out


def make_split(
    records: list[Record],
    mode: str = "official",
    seed: int = 42,
    fractions: tuple[float, float, float] = (0.70, 0.15, 0.15),
    content_keys: dict | None = None,
) -> Split:
    """Split records into train/val/test by patient. content_keys (path -> hash) also keeps duplicates together."""
    train_f, val_f, test_f = fractions
    if mode == "pooled":
        parts = _carve(records, {"train": train_f, "val": val_f, "test": test_f}, seed, content_keys)
        note = f"pooled: all images re-split by patient {train_f:.0%}/{val_f:.0%}/{test_f:.0%}, seed {seed}"
    elif mode == "official":
        given_test = [r for r in records if r.given_split == "test"]
        pool = [r for r in records if r.given_split != "test"]
        if given_test:
            test_patients = {r.patient for r in given_test}
            dropped = [r for r in pool if r.patient in test_patients]
            if dropped:
                log.warning("%d train/val images of patients who are also in test/ were left out", len(dropped))
            pool = [r for r in pool if r.patient not in test_patients]
            parts = _carve(pool, {"train": train_f + test_f, "val": val_f}, seed, content_keys)
            parts["test"] = given_test
            note = f"official: test/ kept; validation carved from train+val by patient ({val_f:.0%}), seed {seed}"
        else:
            parts = _carve(pool, {"train": train_f, "val": val_f, "test": test_f}, seed, content_keys)
            note = (
                "official: the data has no test/ folder, so test was carved out of train+val by patient "
                f"({test_f:.0%}), like validation ({val_f:.0%}); seed {seed}"
            )
    else:
        raise ValueError(f"unknown split mode {mode!r}: use 'official' or 'pooled'")
    rows = [(record, side) for side in SPLITS for record in sorted(parts.get(side, []), key=lambda r: str(r.path))]
    split = Split(rows, note)
    check_no_leak(split, content_keys)
    return split


def check_no_leak(split: Split, content_keys: dict | None = None) -> None:
    """Refuse a split where one patient, or one byte-identical image, is on two sides."""
    sides = defaultdict(set)
    for record, side in split.rows:
        sides[("patient", record.patient)].add(side)
        if content_keys and record.path in content_keys:
            sides[("image", content_keys[record.path])].add(side)
    leaks = [(kind, key, sorted(s)) for (kind, key), s in sides.items() if len(s) > 1]
    if leaks:
        examples = "; ".join(f"{kind} {key} in {'+'.join(s)}" for kind, key, s in leaks[:5])
        raise LeakError(f"split leaks {len(leaks)} patients/images across sides: {examples}")


def write_split_csv(split: Split, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "label", "patient", "split"])
        for record, side in split.rows:
            writer.writerow([str(record.path), record.label, record.patient, side])


def read_split_csv(path: Path) -> Split:
    rows = []
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        for row in csv.DictReader(f):
            record = Record(Path(row["file"]), int(row["label"]), row["patient"], row["split"])
            rows.append((record, row["split"]))
    return Split(rows, f"read from {path}")
