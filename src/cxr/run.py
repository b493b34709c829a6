"""A run folder on disk: config, model, metadata. Loading never executes code from the files."""

import json
import os
from pathlib import Path

MODEL_FILE = "model.keras"
INFO_FILE = "model.json"  # input size, labels, threshold and its rule, weights note


class RunError(SystemExit):
    pass


def write_json(path: Path, obj) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RunError(f"{path}: not found (is this a cxr run folder?)") from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}: not valid JSON ({exc})") from None


def load_keras_model(path: Path):
    """Load a .keras file in safe mode: a file carrying a Lambda layer (arbitrary code) is refused."""
    import keras

    path = Path(path)
    if not path.exists():
        raise RunError(f"{path}: model file not found (train first: cxr train ... --out {path.parent})")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
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
    """(keras model, info dict) of a finished run."""
    run_dir = Path(run_dir)
    info = read_json(run_dir / INFO_FILE)
    return load_keras_model(run_dir / MODEL_FILE), info
