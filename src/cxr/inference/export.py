"""Export a run's model to ONNX, with a metadata file that lets other programs use it correctly."""

import hashlib
from pathlib import Path

import numpy as np

from cxr import __version__
from cxr.files import file_sha256, written_aside
from cxr.models.for_inference import inference_model, outputs_logits
from cxr.runs.folder import ONNX_FILE, ONNX_META, RunError, load_run, write_json


def weights_sha256(model) -> str:
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def export_onnx(run_dir: Path, force: bool = False) -> Path:
    run_dir = Path(run_dir)
    out = run_dir / ONNX_FILE
    if out.exists() and not force:
        raise RunError(f"{out} already exists; pass --force to replace it")
    model, info = load_run(run_dir)
    size = int(info["size"])
    logits = outputs_logits(info)
    inference = inference_model(model, size, logits)
    try:
        with written_aside(out) as tmp:
            inference.export(str(tmp), format="onnx", verbose=False)
    except ImportError as exc:
        raise RunError(f"ONNX export needs tf2onnx and onnx: pip install 'cxr[onnx]' ({exc})") from None
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
