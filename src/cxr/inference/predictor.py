"""The one prediction path: a run's preprocessing and model, on Keras or on the exported ONNX file.

Everything that turns files or pixels into probabilities goes through a Predictor: training (to choose
the threshold on validation), evaluate, stress, predict, serve, export parity checks and benchmarks.
TensorFlow is imported only by the Keras engine.
"""

import json
from pathlib import Path

import numpy as np

from cxr.data.cache import LoadedImages, load_images
from cxr.data.images import decode
from cxr.data.preprocess import Preprocessing
from cxr.errors import UsageError
from cxr.files import file_sha256
from cxr.inference.ood import load_for_run
from cxr.inference.temperature import apply_temperature, calibrated
from cxr.runs.folder import ONNX_FILE, ONNX_META, RunError, ensemble_members, load_run


class Predictor:
    """P(pneumonia) for files or preprocessed (n, size, size) uint8 images, with the run's threshold."""

    def __init__(self, run_dir: Path | None = None, engine: str = "keras", precision: str = "auto",
                 threshold: float | None = None, *, model=None, info: dict | None = None):
        """From a run folder, or from a Keras `model` and its `info` in memory (the training run, before its
        folder is complete). `threshold` replaces the run's validation-chosen one (a user's operating point)."""
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise UsageError(f"--threshold must lie between 0 and 1, not {threshold}")
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.engine, self._threshold = engine, threshold
        if model is not None:
            self._use_keras(model, info, precision)
        elif engine == "keras":
            model, info = load_run(self.run_dir)
            self._use_keras(model, info, precision)
        elif engine == "onnx":
            self.info, self._run = _onnx_session(self.run_dir)
            self.model, self.precision = None, "float32"
            self._logits = self.info.get("output") == "logit"  # exports before logits gave probabilities
        else:
            raise RunError(f"unknown engine {engine!r}: use keras or onnx")
        self._finish()

    @classmethod
    def from_model(cls, model, info: dict, precision: str = "auto") -> "Predictor":
        """A Predictor around a model in memory (the training run, before its folder is complete)."""
        return cls(model=model, info=info, precision=precision)

    def _use_keras(self, model, info: dict, precision: str) -> None:
        from cxr.inference.precision import resolve_precision
        from cxr.models import copy_in_precision
        from cxr.models.for_inference import inference_model, outputs_logits

        self.model, self.info, self.precision = model, info, resolve_precision(precision)
        self._logits, size = outputs_logits(info), int(info["size"])
        if "members" in info:  # an ensemble has no single architecture to rebuild in another precision
            self.precision = "float32"
        fast = model
        if self.precision == "mixed_bfloat16":  # 3x faster on bfloat16 CPUs; probabilities move ~1e-3
            fast = copy_in_precision(info["model"], size, model, "mixed_bfloat16")
        self._run = _compiled(inference_model(fast, size, self._logits), size)

    def _finish(self) -> None:
        self.preprocessing = Preprocessing.from_dict(self.info)
        self.size = self.preprocessing.size
        self.temperature = float(self.info.get("temperature") or 1.0)  # fitted on validation at training time
        self.guard = load_for_run(self.run_dir)
        threshold = self.info.get("threshold") if self._threshold is None else self._threshold
        self.threshold = 0.5 if threshold is None else float(threshold)

    def predict(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Calibrated probabilities for images already preprocessed by this run's preprocessing."""
        x = np.asarray(images, dtype=np.float32)
        if x.size == 0:
            return np.zeros(0, np.float32)
        if x.ndim == 2:  # one image
            x = x[None]
        if x.ndim == 3:  # no channel axis
            x = x[..., None]
        if x.shape[1:] != (self.size, self.size, 1):  # a reshape would cut larger images into several
            raise ValueError(f"this run reads {self.size} x {self.size} px images; got an array of shape "
                             f"{np.shape(images)}")
        probs = np.concatenate([self._run(x[i: i + batch_size]).reshape(-1) for i in range(0, len(x), batch_size)])
        if self._logits:
            return calibrated(probs, self.temperature).astype(np.float32)
        if self.temperature == 1.0:
            return probs
        return apply_temperature(probs, self.temperature).astype(np.float32)

    def out_of_distribution(self, images: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(scores, flags) of the run's guard; (None, None) for a run saved without one (see `cxr guard`)."""
        if self.guard is None:
            return None, None
        scores = self.guard.score(images)
        return scores, self.guard.flags(scores)

    def load(self, paths, use_cache: bool = True, progress: bool = False) -> LoadedImages:
        """Files -> preprocessed images (through the decode cache), bad files reported and skipped."""
        return load_images(paths, self.preprocessing, use_cache=use_cache, progress=progress)

    def decode(self, data: bytes) -> np.ndarray:
        """Bytes of one file -> the preprocessed image the model sees."""
        return decode(data, self.preprocessing)

    def explained_model(self):
        """The model whose evidence maps are shown: the run's own, or for an ensemble its first member that
        takes the ensemble's input as it is."""
        if self.model is None:
            raise RunError("explanations need the Keras engine (gradients are not available from ONNX Runtime)")
        if "members" in self.info:
            return load_run(next(m for m, size in ensemble_members(self.info, self.run_dir) if size == self.size))[0]
        return self.model

    def label(self, prob: float) -> str:
        return self.info["classes"][int(prob >= self.threshold)]


def _compiled(model, size: int):
    """The model as one TensorFlow graph: eager layer-by-layer calls are 10x slower for one image."""
    import tensorflow as tf

    graph = tf.function(lambda x: model(x, training=False),
                        input_signature=[tf.TensorSpec((None, size, size, 1), tf.float32)])
    return lambda x: graph(x).numpy()


def _onnx_session(run_dir: Path):
    try:
        import onnxruntime as ort
    except ImportError:
        raise RunError("the ONNX engine needs onnxruntime: pip install 'cxr[onnx]'") from None
    path, meta_path = run_dir / ONNX_FILE, run_dir / ONNX_META
    if not path.exists() or not meta_path.exists():
        raise RunError(f"{path}: no exported model; run `cxr export {run_dir} --format onnx` first")
    try:
        meta = json.loads(meta_path.read_text())
        expected = meta["onnx_sha256"]
        size, threshold, classes = int(meta["size"]), float(meta["threshold"]), list(meta["classes"])
        Preprocessing.from_dict(meta)
    except (ValueError, KeyError, TypeError) as exc:
        raise RunError(f"{meta_path}: invalid metadata ({exc})") from None
    if file_sha256(path) != expected:
        raise RunError(f"{path}: its hash does not match {meta_path}; the file was changed after export")
    if not (0.0 <= threshold <= 1.0) or len(classes) != 2:
        raise RunError(f"{meta_path}: invalid threshold or labels")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    if len(inputs) != 1 or list(inputs[0].shape[1:]) != [size, size, 1]:
        raise RunError(f"{path}: expected one input of shape (n, {size}, {size}, 1)")
    name = inputs[0].name
    return meta, lambda x: session.run(None, {name: x})[0]
