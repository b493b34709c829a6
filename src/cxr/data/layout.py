"""Discover a Kaggle-style chest X-ray folder: ROOT/{train,val[,test]}/{NORMAL,PNEUMONIA}/*.

Labels come from the class folder names; the patient comes from the file name.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cxr import CLASSES
from cxr.errors import DataError

SPLIT_DIRS = ("train", "val", "test")
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".dcm", ".dicom", ".bmp", ".tif", ".tiff", ".gif"}

# personN_bacteria_M / personN_virus_M (PNEUMONIA): the person number alone is the patient, because
# bacteria and virus images may share a number and grouping them together can only make a split stricter.
_PERSON = re.compile(r"^(person\d+)_", re.IGNORECASE)
# IM-XXXX-YYYY / NORMAL2-IM-XXXX-YYYY[-ZZZZ] (NORMAL): the prefix up to the first number block.
_IM = re.compile(r"^((?:NORMAL2-)?IM-\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Record:
    path: Path
    label: int  # index into CLASSES
    patient: str
    given_split: str  # the folder the file came from: train, val or test


def patient_id(filename: str) -> str:
    """Patient key of a Kermany file name; unknown patterns are their own patient (the stem)."""
    stem = Path(filename).stem
    for pattern in (_PERSON, _IM):
        match = pattern.match(stem)
        if match:
            return match.group(1).lower()
    return stem.lower()


def default_data_dir() -> Path:
    """$CXR_DATA, else the shared data beside the project, else a clear error on how to get the data."""
    env = os.environ.get("CXR_DATA")
    if env:
        return Path(env)
    shared = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "chest_xray"
    if shared.is_dir():
        return shared.resolve()
    raise DataError(
        "No data folder given. Download the Kaggle data set 'chest-xray-pneumonia' (Kermany et al. 2018), "
        "unzip it, and pass --data path/to/chest_xray (or set CXR_DATA)."
    )


def image_files(folder: Path) -> list[Path]:
    """Image files under a folder, recursively. Broken links are kept: reading them reports why they fail."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())


def discover(root: Path) -> list[Record]:
    """All labelled images under ROOT/{train,val,test}/{NORMAL,PNEUMONIA}.

    A folder with just NORMAL/PNEUMONIA (no split folders) is read as one labelled set named 'test'.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    split_dirs = [(name, root / name) for name in SPLIT_DIRS if (root / name).is_dir()]
    if not split_dirs and any((root / c).is_dir() for c in CLASSES):
        split_dirs = [("test", root)]
    records = []
    for split, split_dir in split_dirs:
        for label, cls in enumerate(CLASSES):
            for path in image_files(split_dir / cls) if (split_dir / cls).is_dir() else []:
                records.append(Record(path, label, patient_id(path.name), split))
    if not records:
        raise DataError(
            f"{root}: no images found; expected {root}/train/NORMAL, {root}/train/PNEUMONIA, ... "
            f"or {root}/NORMAL and {root}/PNEUMONIA"
        )
    return records
