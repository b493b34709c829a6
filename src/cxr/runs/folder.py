"""A run folder on disk: reading and writing its files. Loading never executes code from the files.

Run folder layout:
  config.json      everything needed to reproduce the run (cxr.runs.settings.TrainConfig)
  split.csv        file, label, patient, split
  history.csv      one row per epoch (loss, accuracy, val_*, epoch_seconds)
  model.keras      best model (lowest validation loss), float32, loads in safe mode
  model.json       the input contract (preprocessing), labels, threshold chosen on validation, weights note
                   (cxr.runs.info.RunInfo: its one reader and writer)
  ood.npz          the pixel out-of-distribution guard fitted on the training split (cxr.inference.ood)
  feature_guard.npz  the feature guard on the model's and a frozen ImageNet network's features
                   (cxr.inference.feature_guard)
  model.onnx       after `cxr export`, with model.onnx.json (its hash, the same contract)
  summary.txt      layer summary
  training.json    wall times, epochs, skipped files
  metrics.json     evaluation on the run's test split (cxr.runs.results.Metrics); predictions.csv, figures/
  MODEL_CARD.md    what the model is, how it was chosen and how it did, for a reader
  stress.json      after `cxr stress`: the test split under each change (stress_val.json: validation's;
                   cxr.runs.results.Stress)
  evidence.json    after `cxr evidence`: where the evidence maps put their weight, per class (results.Evidence)
  site_checks/     after `cxr site-check`: one folder per batch checked, each with site_check.json
                   (cxr.runs.site_check_result.SiteCheck), site_check.md and a figure
  checkpoints/     last epoch + early-stopping state, for --resume (removed when training ends)
"""

from pathlib import Path

from cxr.errors import RunError
from cxr.files import read_json, write_json  # noqa: F401  (the run folder's JSON files, read and written here)

MODEL_FILE = "model.keras"
ONNX_FILE = "model.onnx"


def load_keras_model(path: Path, compile: bool = False):
    """Load a .keras file: the one place every model load goes through.

    cxr's own layers are passed in by name, so a model that uses one loads in any process, whatever it
    imported before. Safe mode stays on: a file carrying a Lambda layer (arbitrary code) is refused.
    `compile=True` also restores the optimizer (resuming a killed training).
    """
    import keras

    from cxr.models.layers import CUSTOM_OBJECTS

    path = Path(path)
    if not path.exists():
        raise RunError(f"{path}: model file not found (train first: cxr train ... --out {path.parent})")
    try:
        return keras.saving.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=compile, safe_mode=True)
    except Exception as exc:
        message = str(exc)
        if "unsafe" in message.lower() or "lambda" in message.lower():
            raise RunError(
                f"{path}: refused to load: the file contains a Lambda layer (code that would run on load); "
                "cxr models never contain one, so this file was not made by cxr or was tampered with"
            ) from None
        reason = message.splitlines()[0] if message else type(exc).__name__
        raise RunError(f"{path}: cannot load model: {reason}") from None


def load_run(run_dir: Path):
    """(keras model, RunInfo) of a finished run. A process loads each saved model once: an ensemble's members are
    read by its building, its calibration, its guards and its evaluation, and a model as large as DenseNet121
    takes seconds to load. The model is shared, for inference only: a caller that changes weights loads its
    own copy with load_keras_model."""
    from cxr.runs.info import RunInfo

    run_dir = Path(run_dir)
    info = RunInfo.read(run_dir)
    path = run_dir / MODEL_FILE
    if not path.exists():
        return load_keras_model(path), info  # its error names the file
    key = _file_key(path)  # a file written again loads again
    if key not in _LOADED:
        _remember(key, load_keras_model(path))
    return _LOADED[key], info


def save_model(model, run_dir: Path) -> None:
    """RUN/model.keras, remembered as loaded: the process that saved it (training, `cxr ensemble`) reads the run
    on (its evaluation) without loading the file back, and with the model's compiled forms at hand."""
    path = Path(run_dir) / MODEL_FILE
    model.save(path)
    _remember(_file_key(path), model)


_LOADED: dict = {}  # (path, mtime, size) -> model, the last few


def _file_key(path: Path) -> tuple:
    stat = path.stat()
    return path.resolve(), stat.st_mtime_ns, stat.st_size


def _remember(key: tuple, model) -> None:
    if len(_LOADED) >= 8:
        del _LOADED[next(iter(_LOADED))]
    _LOADED[key] = model


def read_history(run_dir: Path) -> dict:
    """history.csv as numpy columns; empty columns when no epoch finished."""
    import csv

    import numpy as np

    with open(Path(run_dir) / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keys = rows[0].keys() if rows else ("epoch", "loss", "val_loss", "epoch_seconds")
    return {key: np.array([float(r[key]) for r in rows]) for key in keys}


def run_preprocessing(run_dir: Path, engine: str = "keras"):
    """The run's input contract, read without loading its model."""
    from cxr.runs.info import RunInfo

    return (RunInfo.read_onnx(run_dir) if engine == "onnx" else RunInfo.read(run_dir)).preprocessing
