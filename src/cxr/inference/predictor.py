"""The one prediction path: a run's preprocessing and model, on Keras or on the exported ONNX file.

Everything that turns files or pixels into probabilities goes through a Predictor: training (to choose
the threshold on validation), evaluate, stress, predict, serve, export parity checks and benchmarks.
TensorFlow is imported only by the Keras engine.
"""

from pathlib import Path

import numpy as np

from cxr.data.cache import LoadedImages, load_images
from cxr.data.images import decode
from cxr.errors import UsageError
from cxr.files import file_sha256
from cxr.inference.feature_guard import load_feature_guard
from cxr.inference.ood import load_for_run
from cxr.inference.remembered import Remembered
from cxr.inference.temperature import apply_temperature, calibrated
from cxr.runs.folder import ONNX_FILE, RunError, load_run
from cxr.runs.info import ONNX_META, RunInfo


class Predictor:
    """P(pneumonia) for files or preprocessed (n, size, size) uint8 images, with the run's threshold."""

    def __init__(self, run_dir: Path | None = None, engine: str = "keras", precision: str = "auto",
                 threshold: float | None = None, *, model=None, info: RunInfo | None = None, remember: bool = True):
        """From a run folder, or from a Keras `model` and its `info` in memory (the training run, before its
        folder is complete). `threshold` replaces the run's validation-chosen one (a user's operating point).
        Under either engine `info` is the run's RunInfo (under ONNX, the export's view of it). `remember`: take
        what the models computed lately for the same pixels (cxr.inference.remembered); a service computes every
        answer, so that its latency is the model's."""
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise UsageError(f"--threshold must lie between 0 and 1, not {threshold}")
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.engine, self.remember = engine, remember
        self._members, self._features, self._member_predictors, self._views, self._model = None, None, None, None, model
        if model is not None:
            self.info = info
            self._use_keras(precision)
        elif engine == "keras":
            self.info = RunInfo.read(self.run_dir)
            self._use_keras(precision)
        elif engine == "onnx":
            self.info = RunInfo.read_onnx(self.run_dir)
            self.precision = "float32"
            self._run = _onnx_session(self.run_dir, self.info)
        else:
            raise RunError(f"unknown engine {engine!r}: use keras or onnx")
        self.preprocessing = self.info.preprocessing
        self.size = self.preprocessing.size
        self.temperature = self.info.temperature  # fitted on validation at training time
        self.guard = load_for_run(self.run_dir)
        # The feature guard reads the model's features, which only the Keras engine gives.
        self.feature_guard = load_feature_guard(self.run_dir) if self.engine == "keras" else None
        self.threshold = self.info.threshold if threshold is None else float(threshold)

    @classmethod
    def from_model(cls, model, info: RunInfo, precision: str = "auto") -> "Predictor":
        """A Predictor around a model in memory (the training run, before its folder is complete)."""
        return cls(model=model, info=info, precision=precision)

    @property
    def model(self):
        """The run's Keras model; None under ONNX. An ensemble that predicts through its members loads its own
        saved model only where something asks for it."""
        if self._model is None and self.engine == "keras":
            self._model = load_run(self.run_dir)[0]
        return self._model

    def _use_keras(self, precision: str) -> None:
        """The model in the precision its architecture runs fastest in here (cxr.inference.precision); an ensemble
        that averages its members' logits runs each member through a Predictor of its own."""
        from cxr.inference.precision import resolve_precision
        from cxr.models import copy_in_precision
        from cxr.models.for_inference import forms_of, inference_model, shared_inference_model

        if self._by_members():
            self._member_predictors = [Predictor(m.run, precision=precision, remember=self.remember)
                                       for m in self.info.members]
            self.precision = "+".join(dict.fromkeys(m.precision for m in self._member_predictors))
            self._views = _views_of(self.info.size) if self.info.tta else None
            return
        # Older ensembles averaged probabilities: they run as saved, in float32.
        policy = "float32" if self.info.is_ensemble else resolve_precision(precision, self.info.model)
        model = self.model
        forms, size, logits = forms_of(model), self.info.size, self.info.outputs_logits
        key = ("compiled", policy, logits)
        if key not in forms:
            if policy == "float32":
                fast, inference = model, shared_inference_model(model, size, logits)  # the one ONNX export writes
            else:  # 3x faster on bfloat16 CPUs; probabilities move ~1e-3
                fast = copy_in_precision(self.info.model, size, model, policy)
                inference = inference_model(fast, size, logits)
            forms[key] = _compiled(inference, size), inference
        (self._run, self._inference), self.precision = forms[key], policy

    def _by_members(self) -> bool:
        """Whether this is an ensemble of logits whose member runs are at hand. Without them (an ensemble folder
        copied alone) its saved model still predicts, in float32."""
        if not (self.info.is_ensemble and self.info.combine == "mean_logit"):
            return False
        try:
            return all(load_run(m.run)[1].outputs_logits for m in self.info.members)
        except RunError:
            return False

    def predict(self, images: np.ndarray, batch_size: int = 64, recompute: bool = False) -> np.ndarray:
        """Calibrated probabilities for images already preprocessed by this run's preprocessing. `recompute`:
        run the model even on pixels it scored lately (a timing)."""
        probs = self.raw(images, batch_size, recompute)
        if self.info.outputs_logits:
            return calibrated(probs, self.temperature).astype(np.float32)
        if self.temperature == 1.0:
            return probs
        return apply_temperature(probs, self.temperature).astype(np.float32)

    def raw(self, images: np.ndarray, batch_size: int = 64, recompute: bool = False) -> np.ndarray:
        """The model's output before calibration, one value per image: a logit, or an older run's probability.

        The same pixels through the same compiled model are computed once in a process (cxr.inference.remembered):
        `cxr stress` scores an ensemble after its members on the same changed images, and the steps of a chain
        read the same splits."""
        x = self._as_batch(images)
        if self._member_predictors:
            from cxr.models.ensemble import member_view

            if not len(x):
                return np.zeros(0, np.float32)
            views = self._views(x) if self._views else [images]
            logits = [member.raw(member_view(view, member.size), batch_size, recompute)
                      for member in self._member_predictors for view in views]
            return np.mean(logits, axis=0, dtype=np.float32)
        return _OUTPUTS(self._run, images, lambda: np.concatenate(
            [self._run(x[i: i + batch_size]).reshape(-1) for i in range(0, len(x), batch_size)] or
            [np.zeros(0, np.float32)]), recompute or not self.remember)

    def _as_batch(self, images) -> np.ndarray:
        """(n, size, size, 1) float32 from one image or a batch, with or without the channel axis."""
        x = np.asarray(images, dtype=np.float32)
        if x.ndim == 2 and x.size:  # one image
            x = x[None]
        if x.ndim == 3:  # no channel axis
            x = x[..., None]
        if x.size and x.shape[1:] != (self.info.size, self.info.size, 1):  # a reshape would cut larger images
            raise ValueError(f"this run reads {self.info.size} x {self.info.size} px images; got an array of shape "
                             f"{np.shape(images)}")
        return x.reshape(-1, self.info.size, self.info.size, 1)

    def out_of_distribution(self, images: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(scores, flags) of the run's guard; (None, None) for a run saved without one (see `cxr guard`)."""
        if self.guard is None:
            return None, None
        scores = self.guard.score(images)
        return scores, self.guard.flags(scores)

    def feature_out_of_distribution(self, images: np.ndarray, features: dict | None = None
                                    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(scores, flags) of the run's feature guard; (None, None) without one (an older run, the ONNX engine).
        `features`: self.features(images), where the caller has them already."""
        if self.feature_guard is None:
            return None, None
        scores = self.feature_guard.score(self.features(images) if features is None else features)
        return scores, self.feature_guard.flags(scores)

    def members(self) -> list:
        """(Keras model, input size) of each member of an ensemble, or of the model itself: loaded once."""
        if self.engine != "keras":
            raise RunError("the model's features and evidence maps need the Keras engine (not ONNX Runtime)")
        if self._members is None:
            self._members = ([(load_run(m.run)[0], m.size) for m in self.info.members] if self.info.is_ensemble
                             else [(self.model, self.info.size)])
        return self._members

    def features(self, images: np.ndarray) -> dict:
        """The feature guard's blocks for preprocessed images: the model's penultimate and intermediate features
        (cxr.inference.features), and the frozen network's (cxr.inference.population) where the guard reads them."""
        if self._features is None:
            from cxr.inference.features import FeatureExtractor
            from cxr.models.for_inference import forms_of

            # The models this Predictor computes with, in their precision and inference form: what its feature guard
            # was fitted on.
            models = ([(m._inference, m.size) for m in self._member_predictors] if self._member_predictors else
                      self.members() if self.info.is_ensemble else [(self._inference, self.size)])
            forms, key = forms_of(models[0][0]), ("features", tuple(id(m) for m, _ in models))
            if key not in forms:
                forms[key] = FeatureExtractor(models, self.size)
            self._features = forms[key]
        blocks = _FEATURES(self._features, images, lambda: self._features(images), not self.remember)
        if self.feature_guard is not None and self.feature_guard.population:
            from cxr.inference.population import population_features

            blocks.update(population_features()(images, recompute=not self.remember))
        return blocks

    def load(self, paths, use_cache: bool = True, progress: bool = False) -> LoadedImages:
        """Files -> preprocessed images (through the decode cache), bad files reported and skipped."""
        return load_images(paths, self.preprocessing, use_cache=use_cache, progress=progress)

    def decode(self, data: bytes) -> np.ndarray:
        """Bytes of one file -> the preprocessed image the model sees."""
        return decode(data, self.preprocessing)

    def explainer(self):
        """What draws the evidence maps of this run's answers: HiResCAM of its model, or for an ensemble the
        members' maps combined as their logits are (cxr.inference.explain.EnsembleCam)."""
        from cxr.inference.explain import EnsembleCam, HiResCam

        members = self.members()
        if self.info.is_ensemble:
            return EnsembleCam(members, [m.run.name for m in self.info.members])
        return HiResCam(self.model)

    def label(self, prob: float) -> str:
        return self.info.classes[int(prob >= self.threshold)]


def _compiled(model, size: int):
    """The model as one TensorFlow graph: eager layer-by-layer calls are 10x slower for one image."""
    import tensorflow as tf

    graph = tf.function(lambda x: model(x, training=False),
                        input_signature=[tf.TensorSpec((None, size, size, 1), tf.float32)])
    return lambda x: graph(x).numpy()


def _views_of(size: int):
    """An ensemble's test-time views of (n, size, size, 1) float32 images, as its saved model computes them."""
    import keras
    import tensorflow as tf

    from cxr.models.ensemble import tta_views

    image = keras.Input((size, size, 1))
    model = keras.Model(image, tta_views(image, size))
    graph = tf.function(lambda x: model(x, training=False),
                        input_signature=[tf.TensorSpec((None, size, size, 1), tf.float32)])
    return lambda x: [view.numpy() for view in graph(x)]


_OUTPUTS = Remembered(keep=64)  # a model's outputs: a few floats an image
_FEATURES = Remembered(keep=6)  # feature blocks: a few MB for a split


def _onnx_session(run_dir: Path, info: RunInfo):
    try:
        import onnxruntime as ort
    except ImportError:
        raise RunError("the ONNX engine needs onnxruntime: pip install -e '.[onnx]' in the cxr folder") from None
    path = run_dir / ONNX_FILE
    if not path.exists():
        raise RunError(f"{path}: no exported model; run `cxr export {run_dir} --format onnx` first")
    if file_sha256(path) != info.extra["onnx_sha256"]:
        raise RunError(f"{path}: its hash does not match {run_dir / ONNX_META}; the file was changed after export")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    if len(inputs) != 1 or list(inputs[0].shape[1:]) != [info.size, info.size, 1]:
        raise RunError(f"{path}: expected one input of shape (n, {info.size}, {info.size}, 1)")
    name = inputs[0].name
    return lambda x: session.run(None, {name: x})[0]
