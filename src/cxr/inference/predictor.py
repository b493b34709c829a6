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
from cxr.inference.temperature import apply_temperature, calibrated
from cxr.runs.folder import ONNX_FILE, RunError, load_run
from cxr.runs.info import ONNX_META, RunInfo


class Predictor:
    """P(pneumonia) for files or preprocessed (n, size, size) uint8 images, with the run's threshold."""

    def __init__(self, run_dir: Path | None = None, engine: str = "keras", precision: str = "auto",
                 threshold: float | None = None, *, model=None, info: RunInfo | None = None):
        """From a run folder, or from a Keras `model` and its `info` in memory (the training run, before its
        folder is complete). `threshold` replaces the run's validation-chosen one (a user's operating point).
        Under either engine `info` is the run's RunInfo (under ONNX, the export's view of it)."""
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise UsageError(f"--threshold must lie between 0 and 1, not {threshold}")
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.engine = engine
        self._members, self._features, self._policy_key = None, None, None
        if model is not None:
            self.info = info
            self._use_keras(model, precision)
        elif engine == "keras":
            model, self.info = load_run(self.run_dir)
            self._use_keras(model, precision)
        elif engine == "onnx":
            self.info = RunInfo.read_onnx(self.run_dir)
            self.model, self.precision = None, "float32"
            self._run = _onnx_session(self.run_dir, self.info)
        else:
            raise RunError(f"unknown engine {engine!r}: use keras or onnx")
        self.preprocessing = self.info.preprocessing
        self.size = self.preprocessing.size
        self.temperature = self.info.temperature  # fitted on validation at training time
        self.guard = load_for_run(self.run_dir)
        # The feature guard reads the model's features, which only the Keras engine gives.
        self.feature_guard = load_feature_guard(self.run_dir) if self.model is not None else None
        self.threshold = self.info.threshold if threshold is None else float(threshold)

    @classmethod
    def from_model(cls, model, info: RunInfo, precision: str = "auto") -> "Predictor":
        """A Predictor around a model in memory (the training run, before its folder is complete)."""
        return cls(model=model, info=info, precision=precision)

    def _use_keras(self, model, precision: str) -> None:
        from cxr.models.for_inference import forms_of

        self.model, forms = model, forms_of(model)
        policies = self._policies(precision)
        self.precision = "+".join(dict.fromkeys(policies))  # one policy, or each member's where they differ
        key = ("compiled", policies, self.info.outputs_logits)
        if key not in forms:
            forms[key] = _compiled(self._in_policies(policies, forms), self.info.size)
        self._run, self._policy_key = forms[key], policies

    def _policies(self, precision: str) -> tuple[str, ...]:
        """The dtype policy of the model, or of each member of an ensemble: each architecture computes in what
        runs it fastest here (cxr.inference.precision)."""
        from cxr.inference.precision import resolve_precision

        if not self.info.is_ensemble:
            return (resolve_precision(precision, self.info.model),)
        if self.info.combine != "mean_logit":  # older ensembles averaged probabilities: run as saved
            return ("float32",)
        return tuple(resolve_precision(precision, load_run(m.run)[1].model) for m in self.info.members)

    def _in_policies(self, policies: tuple[str, ...], forms: dict):
        """The inference model computing in `policies` (3x faster on bfloat16 CPUs where bfloat16 is chosen;
        probabilities move ~1e-3); forms[("members", policies)] gets its members, for the features."""
        from cxr.models import copy_in_precision
        from cxr.models.ensemble import build_ensemble
        from cxr.models.for_inference import inference_model, shared_inference_model

        size, logits = self.info.size, self.info.outputs_logits
        if set(policies) == {"float32"}:
            forms[("members", policies)] = self.members()
            return shared_inference_model(self.model, size, logits)  # the one ONNX export writes
        runs = [load_run(m.run) for m in self.info.members] if self.info.is_ensemble else [(self.model, self.info)]
        members = [(copy_in_precision(info.model, info.size, model, policy) if policy != "float32" else model,
                    info.size) for (model, info), policy in zip(runs, policies)]
        forms[("members", policies)] = members
        if not self.info.is_ensemble:
            return inference_model(members[0][0], size, logits)
        return inference_model(build_ensemble(*map(list, zip(*members)), size, self.info.tta), size, logits)

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
        if self.info.outputs_logits:
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
        if self.model is None:
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

            forms = forms_of(self.model)  # the members in this Predictor's precision: what its guard was fitted on
            key = ("features", self._policy_key)
            if key not in forms:
                forms[key] = FeatureExtractor(forms[("members", self._policy_key)], self.size)
            self._features = forms[key]
        blocks = self._features(images)
        if self.feature_guard is not None and self.feature_guard.population:
            from cxr.inference.population import population_features

            blocks.update(population_features()(images))
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
