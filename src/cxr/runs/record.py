"""How a run was trained (training.json), typed: its one reader and its one writer.

An ensemble trains nothing itself: its record sums its members' times and has no epochs of its own.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from cxr.errors import RunError
from cxr.files import read_json, write_json

TRAINING_FILE = "training.json"


@dataclass(frozen=True)
class TrainingRecord:
    split_note: str
    images: dict  # images per side of the split
    skipped: tuple = ()  # (path, why) of every file that could not be read
    epochs_run: int = 0
    best_epoch: int | None = None  # None: no epochs of its own (an ensemble)
    epoch_seconds_mean: float = 0.0
    train_seconds: float = 0.0
    feature_seconds: float = 0.0
    load_seconds: float = 0.0
    precision: str = "float32"
    replicas: int = 1
    members: tuple[str, ...] = ()  # an ensemble's member runs

    @classmethod
    def read(cls, run_dir: Path) -> "TrainingRecord":
        path = Path(run_dir) / TRAINING_FILE
        raw = read_json(path)
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: (tuple(map(tuple, v)) if k == "skipped" else tuple(v) if k == "members" else v)
                          for k, v in raw.items() if k in known})
        except TypeError as exc:
            raise RunError(f"{path}: malformed training record ({exc})") from None

    def write(self, run_dir: Path) -> Path:
        """The one writer of training.json."""
        path = Path(run_dir) / TRAINING_FILE
        record = dataclasses.asdict(self)
        record["skipped"] = [[str(p), why] for p, why in self.skipped]
        write_json(path, record)
        return path
