"""FastAPI app: GET / (page), POST /api/predict, GET /api/health, GET /api/model, OpenAPI docs at /docs.

The model is loaded once. Requests run in the thread pool (sync endpoints), off the event loop, and concurrent
ones are scored together in one model call (serve/batching.py).
Uploads are checked by their bytes, not their names, and size-limited before decoding.
"""

import base64
import io
import threading
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image

from cxr import __version__
from cxr.data.images import decode, is_dicom
from cxr.data.pixels import ImageError
from cxr.inference.batch import result_rows
from cxr.inference.predictor import Predictor
from cxr.serve.batching import MicroBatcher

DEFAULT_MAX_UPLOAD = 20 * 1024 * 1024
DISPLAY_SIZE = 384
# The formats `cxr predict` reads, by their first bytes.
SIGNATURES = {b"\xff\xd8\xff": "jpeg", b"\x89PNG\r\n\x1a\n": "png", b"II*\x00": "tiff", b"MM\x00*": "tiff",
              b"BM": "bmp", b"GIF8": "gif"}


def sniff(data: bytes) -> str | None:
    """The format by its bytes: jpeg, png, dicom, or None."""
    if is_dicom(data):
        return "dicom"
    return next((kind for magic, kind in SIGNATURES.items() if data.startswith(magic)), None)


def _png_base64(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def create_app(run_dir: Path, engine: str = "keras", precision: str = "auto",
               max_upload: int = DEFAULT_MAX_UPLOAD) -> FastAPI:
    predictor = Predictor(Path(run_dir), engine=engine, precision=precision)
    model_id = f"{predictor.info.model}@{Path(run_dir).resolve().name}"
    # Concurrent requests are scored together: one model call per batch, not per request.
    score = MicroBatcher(lambda items: result_rows(predictor, [name for name, _ in items],
                                                   np.stack([image for _, image in items]))[0])
    gradcam_lock = threading.Lock()
    gradcam = {}

    def explainer():
        with gradcam_lock:  # built once, on first use
            if "cam" not in gradcam:
                if predictor.model is None:
                    raise HTTPException(400, "explanations need the Keras engine")
                gradcam["cam"] = predictor.explainer()
            return gradcam["cam"]

    app = FastAPI(title="cxr", version=__version__,
                  description="Pneumonia probability for a pediatric chest X-ray. Not a diagnosis.")

    @app.exception_handler(HTTPException)
    async def json_error(_, exc: HTTPException):
        return JSONResponse({"error": exc.detail, "status": exc.status_code}, status_code=exc.status_code)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return resources.files("cxr.serve").joinpath("page.html").read_text()

    @app.get("/api/health")
    def health():
        return {"status": "ok", "model": model_id}

    @app.get("/api/model")
    def model_info():
        info = predictor.info  # the same RunInfo under both engines
        return {"id": model_id, "model": info.model, "size": info.size, "classes": list(info.classes),
                "preprocessing": predictor.preprocessing.to_dict(),
                "threshold": info.threshold, "threshold_rule": info.threshold_rule,
                "weights": info.weights_note, "temperature": info.temperature,
                "members": [m.run.name for m in info.members], "engine": engine, "precision": predictor.precision,
                "cxr_version": __version__,
                "max_upload_bytes": max_upload}

    @app.post("/api/predict")
    def predict(file: UploadFile = File(..., description="a chest X-ray: JPEG, PNG or DICOM"),
                explain: bool = Query(False, description="add an evidence map (HiResCAM, PNG, base64)")):
        data = file.file.read(max_upload + 1)
        if len(data) > max_upload:
            raise HTTPException(413, f"upload is over the {max_upload // 2**20} MB limit")
        kind = sniff(data)
        if kind is None:
            raise HTTPException(415, f"{file.filename or 'upload'} is not a JPEG, PNG, DICOM, TIFF, BMP or GIF image "
                                     "(by its content)")
        try:
            image = predictor.decode(data)
        except ImageError as exc:
            raise HTTPException(422, f"{file.filename or 'upload'}: {exc}") from None
        row = score((file.filename or "upload", image))
        result = {**{k: row[k] for k in ("probability", "label", "threshold", "ood", "ood_score", "feature_ood_score")},
                  "ood_cutoff": None if predictor.guard is None else round(predictor.guard.cutoff, 4),
                  "feature_ood_cutoff": None if predictor.feature_guard is None
                  else round(predictor.feature_guard.cutoff, 4),
                  "model": model_id, "format": kind}
        if explain:
            from cxr.inference.explain import heatmap_rgba

            found = explainer().explain(image[None], called=[row["label"] == predictor.info.classes[1]])
            result["image_png"] = _png_base64(decode(data, predictor.preprocessing.at_size(DISPLAY_SIZE)))
            result["explained_class"] = predictor.info.classes[int(found.explained[0])]
            result["heatmap_caption"] = found.caption(0)
            result["heatmap_blank"] = bool(found.blank[0])
            result["explanation"] = explainer().description  # the method, layer, grid and members explained
            # A blank map is not drawn: the page shows the caption instead.
            result["heatmap_png"] = None if found.blank[0] else _png_base64(
                heatmap_rgba(found.heatmaps[0], DISPLAY_SIZE))
        return result

    return app
