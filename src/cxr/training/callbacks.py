"""Keras callbacks of a training run: per-epoch timing, and the state that lets a killed run resume."""

import time
from pathlib import Path

import keras
import numpy as np

from cxr.files import written_aside
from cxr.runs.folder import write_json


class EpochTimer(keras.callbacks.Callback):
    """Adds epoch_seconds to the logs, so CSVLogger writes it and resume keeps the total."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["epoch_seconds"] = time.perf_counter() - self._start


class EpochSeeds(keras.callbacks.Callback):
    """Dropout and augmentation draw from seeds set by (seed, epoch) at each epoch's start, so a run resumed
    at epoch k draws exactly what the killed run would have drawn."""

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch, logs=None):
        generators = [value for layer in _all_layers(self.model) for value in vars(layer).values()
                      if isinstance(value, keras.random.SeedGenerator)]
        for i, generator in enumerate(generators):
            generator.state.assign(np.array([self.seed * 1000 + i, epoch], dtype=generator.state.dtype))


def _all_layers(layer) -> list:
    """The layer and every layer inside it, depth first, through the public `layers` of nested models."""
    return [layer] + [inner for child in getattr(layer, "layers", []) for inner in _all_layers(child)]


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping that can pick up its patience counter where a killed run left it."""

    def __init__(self, state: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self._state = state

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._state:
            self.wait, self.best, self.best_epoch = self._state["wait"], self._state["best"], self._state["best_epoch"]


class SaveForResume(keras.callbacks.Callback):
    """After every epoch: the model with its optimizer, then the early-stopping state (atomically)."""

    def __init__(self, folder: Path, early_stopping: ResumableEarlyStopping,
                 checkpoint: keras.callbacks.ModelCheckpoint, stage: str):
        super().__init__()
        self.folder, self.early_stopping, self.checkpoint, self.stage = folder, early_stopping, checkpoint, stage

    def on_epoch_end(self, epoch, logs=None):
        with written_aside(self.folder / "last.keras") as tmp:
            self.model.save(tmp)
        es = self.early_stopping
        with open(self.folder.parent / "history.csv") as f:
            history_rows = sum(1 for _ in f) - 1
        write_json(self.folder / "state.json", {
            "stage": self.stage, "epoch": epoch, "wait": es.wait, "best": es.best, "best_epoch": es.best_epoch,
            "history_rows": history_rows,
            # The best checkpoint's loss: below `best` when a gain too small for early stopping was kept.
            "best_saved": float(self.checkpoint.best),
        })


def truncate_history(path: Path, rows: int) -> None:
    """Drop history rows of an epoch the killed process logged but did not checkpoint."""
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: rows + 1]))
