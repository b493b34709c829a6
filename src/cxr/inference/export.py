"""Export a run's model to ONNX, with a metadata file that lets other programs use it correctly."""

import hashlib
from pathlib import Path

import numpy as np

from cxr.files import file_sha256, written_aside
from cxr.models.for_inference import shared_inference_model
from cxr.runs.folder import ONNX_FILE, RunError, load_run


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
    inference = shared_inference_model(model, info.size, info.outputs_logits)
    try:
        with written_aside(out) as tmp:
            inference.export(str(tmp), format="onnx", verbose=False)
    except ImportError as exc:
        raise RunError(f"ONNX export needs tf2onnx and onnx: pip install -e '.[onnx]' in the cxr folder "
                       f"({exc})") from None
    info.write_onnx(run_dir, onnx_sha256=file_sha256(out), weights_sha256=weights_sha256(model))
    return out
