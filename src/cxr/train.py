"""Training: Keras fit with early stopping, best checkpoint, per-epoch timing and resume after a kill.

Run folder layout:
  config.json      everything needed to reproduce the run
  split.csv        file, label, patient, split
  history.csv      one row per epoch (loss, accuracy, val_*, epoch_seconds)
  model.keras      best model (lowest validation loss), float32, loads in safe mode
  model.json       input size, labels, threshold chosen on validation, weights note
  summary.txt      layer summary
  training.json    wall times, epochs, skipped files
  checkpoints/     last epoch + early-stopping state, for --resume
"""

import dataclasses
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from cxr import CLASSES, __version__
from cxr.data.dataset import Prepared, prepare
from cxr.evaluate import THRESHOLD_RULE, choose_threshold
from cxr.features import cached_features
from cxr.models import Built, build, copy_in_precision
from cxr.run import INFO_FILE, MODEL_FILE, RunError, load_keras_model, read_json, write_json

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    model: str = "cnn"
    data: str = ""
    out: str = ""
    split: str = "official"
    size: int = 128
    epochs: int = 100
    patience: int = 20
    seed: int = 42
    batch_size: int = 32
    learning_rate: float = 1e-3
    class_weight: str = "none"  # none | balanced
    precision: str = "auto"  # auto | float32 | mixed_bfloat16
    fine_tune: int = 0  # unfreeze the last N conv layers of a pretrained base after the head converges
    fine_tune_epochs: int = 10
    weights: str | None = None  # pretrained weights file (VGG19)
    fractions: tuple = (0.70, 0.15, 0.15)


class EpochTimer(keras.callbacks.Callback):
    """Adds epoch_seconds to the logs, so CSVLogger writes it and resume keeps the total."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["epoch_seconds"] = time.perf_counter() - self._start


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

    def __init__(self, folder: Path, early_stopping: ResumableEarlyStopping, stage: str):
        super().__init__()
        self.folder, self.early_stopping, self.stage = folder, early_stopping, stage

    def on_epoch_end(self, epoch, logs=None):
        tmp = self.folder / "last.tmp.keras"
        self.model.save(tmp)
        tmp.replace(self.folder / "last.keras")
        es = self.early_stopping
        with open(self.folder.parent / "history.csv") as f:
            history_rows = sum(1 for _ in f) - 1
        write_json(self.folder / "state.json", {
            "stage": self.stage, "epoch": epoch, "wait": es.wait, "best": es.best, "best_epoch": es.best_epoch,
            "history_rows": history_rows,
        })


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str) -> str:
    """auto: mixed bfloat16 where the CPU computes bfloat16 natively (2.7x faster, same accuracy), else float32."""
    if precision == "auto":
        return "mixed_bfloat16" if cpu_has_bf16() else "float32"
    if precision not in ("float32", "mixed_bfloat16"):
        raise SystemExit(f"--precision must be auto, float32 or mixed_bfloat16, not {precision!r}")
    return precision


def _compile(model: keras.Model, learning_rate: float) -> None:
    model.compile(keras.optimizers.Adam(learning_rate), "binary_crossentropy",
                  metrics=["accuracy", keras.metrics.AUC(name="auc")])


def _fit(run_dir: Path, target: keras.Model, x, y, xv, yv, cfg: TrainConfig, stage: str, epochs: int,
         learning_rate: float, state: dict | None) -> None:
    """Fit `target` (or, when resuming this stage, the saved copy with its optimizer) and keep the best."""
    checkpoints = run_dir / "checkpoints"
    checkpoints.mkdir(exist_ok=True)
    resuming = state is not None and state["stage"] == stage
    if resuming:
        model = keras.saving.load_model(checkpoints / "last.keras", safe_mode=True)  # weights + optimizer
        _truncate_history(run_dir / "history.csv", state["history_rows"])
    else:
        model = target
        _compile(model, learning_rate)
    initial_epoch = state["epoch"] + 1 if resuming else 0
    early = ResumableEarlyStopping(state if resuming else None, monitor="val_loss", patience=cfg.patience,
                                   restore_best_weights=True, verbose=1)
    best_path = checkpoints / f"{stage}_best.keras"
    callbacks = [
        EpochTimer(),
        keras.callbacks.ModelCheckpoint(best_path, monitor="val_loss", save_best_only=True,
                                        initial_value_threshold=state["best"] if resuming else None),
        early,
        keras.callbacks.CSVLogger(run_dir / "history.csv", append=resuming or stage != "fit"),
        SaveForResume(checkpoints, early, stage),
    ]
    class_weight = None
    if cfg.class_weight == "balanced":
        values = compute_class_weight("balanced", classes=np.array([0, 1]), y=y)
        class_weight = {0: float(values[0]), 1: float(values[1])}
    if initial_epoch < epochs:
        model.fit(x, y, validation_data=(xv, yv), epochs=epochs, initial_epoch=initial_epoch,
                  batch_size=cfg.batch_size, class_weight=class_weight, callbacks=callbacks, verbose=2)
    target.set_weights(load_keras_model(best_path).get_weights())


def _truncate_history(path: Path, rows: int) -> None:
    """Drop history rows of an epoch the killed process logged but did not checkpoint."""
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: rows + 1]))


def _unfreeze_last_convs(built: Built, n: int) -> None:
    base = next(layer for layer in built.features.layers if isinstance(layer, keras.Model))
    base.trainable = True
    convs = [layer for layer in base.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.SeparableConv2D))]
    for layer in base.layers:
        layer.trainable = layer in convs[-n:]


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    run_dir = Path(cfg.out)
    state = None
    if resume:
        state = read_json(run_dir / "checkpoints" / "state.json")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise RunError(f"{run_dir} already holds a run; choose another --out, or continue it with --resume {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.precision = resolve_precision(cfg.precision)
    if not resume:
        write_json(run_dir / "config.json", {**dataclasses.asdict(cfg), "cxr_version": __version__})
    keras.utils.set_random_seed(cfg.seed)
    keras.mixed_precision.set_global_policy(cfg.precision)

    started = time.perf_counter()
    data: Prepared = prepare(Path(cfg.data), cfg.split, cfg.seed, cfg.size, cfg.fractions, run_dir)
    load_seconds = time.perf_counter() - started
    train_part, val_part = data.parts["train"], data.parts["val"]
    log.info("split: %s", data.split.note)

    built = build(cfg.model, cfg.size, weights=cfg.weights)
    feature_started = time.perf_counter()
    if built.frozen_base:  # the frozen base gives the same features every epoch: compute them once
        x, xv = (cached_features(built, part.images, cfg) for part in (train_part, val_part))
        first = built.head
    else:
        x, xv = train_part.images, val_part.images  # uint8: the model casts each batch (4x less memory)
        first = built.model
    feature_seconds = time.perf_counter() - feature_started

    if state is None or state["stage"] == "fit":
        _fit(run_dir, first, x, train_part.labels, xv, val_part.labels, cfg, "fit", cfg.epochs,
             cfg.learning_rate, state)
    elif built.frozen_base:
        first.set_weights(load_keras_model(run_dir / "checkpoints" / "fit_best.keras").get_weights())
    if cfg.fine_tune and built.frozen_base:
        _unfreeze_last_convs(built, cfg.fine_tune)
        _fit(run_dir, built.model, train_part.images, train_part.labels,
             val_part.images, val_part.labels, cfg, "fine_tune", cfg.fine_tune_epochs,
             cfg.learning_rate / 100, state)

    final = built.model
    if cfg.precision != "float32":  # saved in float32: it predicts and exports the same on any CPU
        final = copy_in_precision(cfg.model, cfg.size, built.model, "float32")
    keras.mixed_precision.set_global_policy("float32")
    final.save(run_dir / MODEL_FILE)
    (run_dir / "summary.txt").write_text(_summary(final))
    val_probs = predict_probs(final, val_part.images)
    threshold = choose_threshold(val_part.labels, val_probs)
    write_json(run_dir / INFO_FILE, {
        "model": cfg.model, "size": cfg.size, "classes": list(CLASSES),
        "input": "grayscale 0..255, squashed to size x size",
        "threshold": threshold, "threshold_rule": THRESHOLD_RULE, "weights_note": built.weights_note,
        "parameters": int(final.count_params()),
        "trainable_parameters": int(sum(np.prod(w.shape) for w in final.trainable_weights)),
        "cxr_version": __version__,
    })
    history = read_history(run_dir)
    write_json(run_dir / "training.json", {
        "split_note": data.split.note,
        "images": {side: len(part.labels) for side, part in data.parts.items()},
        "skipped": [[str(p), why] for p, why in data.skipped],
        "epochs_run": len(history["epoch"]),
        "best_epoch": int(np.argmin(history["val_loss"])) + 1,
        "epoch_seconds_mean": float(np.mean(history["epoch_seconds"])),
        "train_seconds": float(np.sum(history["epoch_seconds"])) + (feature_seconds if built.frozen_base else 0.0),
        "feature_seconds": feature_seconds if built.frozen_base else 0.0,
        "load_seconds": load_seconds,
        "precision": cfg.precision,
    })
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return run_dir


def predict_probs(model: keras.Model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """P(pneumonia) per image. Small batches: a VGG's first activations are 4 MB per image in float32."""
    if len(images) == 0:
        return np.zeros(0, np.float32)
    return model.predict(images, batch_size=batch_size, verbose=0).reshape(-1)


def _summary(model: keras.Model) -> str:
    lines = []
    model.summary(print_fn=lambda line, **_: lines.append(line), expand_nested=True)
    return "\n".join(lines) + "\n"


def read_history(run_dir: Path) -> dict[str, np.ndarray]:
    """history.csv as columns; empty columns when no epoch finished."""
    import csv

    with open(Path(run_dir) / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keys = rows[0].keys() if rows else ("epoch", "loss", "val_loss", "epoch_seconds")
    return {key: np.array([float(r[key]) for r in rows]) for key in keys}


def config_from_run(run_dir: Path) -> TrainConfig:
    saved = read_json(Path(run_dir) / "config.json")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in saved.items() if k in fields})
    cfg.fractions = tuple(cfg.fractions)
    return cfg
