"""Export a run's model to ONNX, with a metadata file that lets other programs use it correctly."""

import hashlib
import os
from pathlib import Path

import numpy as np

from cxr import __version__
from cxr.checked import file_sha256
from cxr.run import ONNX_FILE, ONNX_META, RunError, load_run, write_json

OUTPUT_LAYER = "pneumonia"  # every builder names its sigmoid output layer so


def weights_sha256(model) -> str:
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def inference_graph(model, size: int, logits: bool):
    """The same model, same weights, in layers that export cleanly to ONNX.

    Traced as they are, augmentation and dropout layers (inside an ensemble's members) export their random
    ops, which ONNX Runtime cannot run, and Normalization exports its mean and variance as extra graph
    inputs; at inference the first are the identity and the second is a per-channel scale and offset, so
    they are swapped for exactly that.
    With `logits`, the output layer leaves out its sigmoid: ONNX Runtime's fast sigmoid is off by ~1e-8 in
    the tails, which the temperature then magnifies (up to 1e-3 in a calibrated probability); the
    engine applies sigmoid and temperature in float64 instead.
    """
    import keras

    from cxr.models.layers import TRAINING_ONLY_LAYERS

    def for_inference(layer):
        if isinstance(layer, TRAINING_ONLY_LAYERS):
            return keras.layers.Identity(name=layer.name)
        if isinstance(layer, keras.layers.Normalization):
            config = layer.get_config()
            sd = np.sqrt(np.asarray(config["variance"], np.float64))
            return keras.layers.Rescaling((1 / sd).tolist(), (-np.asarray(config["mean"]) / sd).tolist(),
                                          name=layer.name)
        config = layer.get_config()
        if logits and layer.name == OUTPUT_LAYER:
            config["activation"] = "linear"
        return layer.__class__.from_config(config)

    inference = keras.models.clone_model(model, clone_function=for_inference, recursive=True)
    inference.set_weights(model.get_weights())
    inference.predict(np.zeros((1, size, size, 1), np.float32), verbose=0)  # export needs a called model
    return inference


def export_onnx(run_dir: Path, force: bool = False) -> Path:
    run_dir = Path(run_dir)
    out = run_dir / ONNX_FILE
    if out.exists() and not force:
        raise RunError(f"{out} already exists; pass --force to replace it")
    model, info = load_run(run_dir)
    size = int(info["size"])
    logits = "members" not in info  # an ensemble averages its members' probabilities: keep them
    inference = inference_graph(model, size, logits)
    tmp = run_dir / f".{ONNX_FILE}.{os.getpid()}.tmp"
    try:
        inference.export(str(tmp), format="onnx", verbose=False)
    except ImportError as exc:
        raise RunError(f"ONNX export needs tf2onnx and onnx: pip install 'cxr[onnx]' ({exc})") from None
    os.replace(tmp, out)
    write_json(run_dir / ONNX_META, {
        "format": "onnx",
        "input": {"name": "image", "shape": ["n", size, size, 1], "dtype": "float32"},
        "preprocessing": info.get("preprocessing", {"size": size}),
        "input_note": "grayscale uint8 values 0..255 after `preprocessing` (cxr.data.preprocess), as float32",
        "output": "logit" if logits else "probability",
        "output_note": ("uncalibrated logit z of PNEUMONIA, shape (n, 1); calibrated = sigmoid(z / temperature)"
                        if logits else "uncalibrated probability p of PNEUMONIA, shape (n, 1); calibrated = "
                        "sigmoid(logit(p) / temperature)"),
        "temperature": info.get("temperature", 1.0),
        "size": size,
        "classes": info["classes"],
        "threshold": info["threshold"],
        "threshold_rule": info["threshold_rule"],
        "model": info["model"],
        "weights_sha256": weights_sha256(model),
        "onnx_sha256": file_sha256(out),
        "cxr_version": __version__,
    })
    return out
