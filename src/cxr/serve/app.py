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


class Service:
    """What the routes answer with: a run's Predictor, its requests scored in batches, its evidence maps."""

    def __init__(self, run_dir: Path, engine: str, precision: str, max_upload: int):
        self.predictor = predictor = Predictor(Path(run_dir), engine=engine, precision=precision, remember=False)
        self.engine, self.max_upload = engine, max_upload
        self.model_id = f"{predictor.info.model}@{Path(run_dir).resolve().name}"
        # Concurrent requests are scored together: one model call per batch, not per request.
        self.score = MicroBatcher(lambda items: result_rows(predictor, [name for name, _ in items],
                                                            np.stack([image for _, image in items]))[0])
        self._explainer, self._explainer_lock = None, threading.Lock()

    def explainer(self):
        with self._explainer_lock:  # built once, on first use
            if self._explainer is None:
                if self.predictor.engine != "keras":
                    raise HTTPException(400, "explanations need the Keras engine")
                self._explainer = self.predictor.explainer()
            return self._explainer

    def model_info(self) -> dict:
        info = self.predictor.info  # the same RunInfo under both engines
        return {"id": self.model_id, "model": info.model, "size": info.size, "classes": list(info.classes),
                "preprocessing": self.predictor.preprocessing.to_dict(),
                "threshold": info.threshold, "threshold_rule": info.threshold_rule,
                "weights": info.weights_note, "temperature": info.temperature,
                "members": [m.run.name for m in info.members], "engine": self.engine,
                "precision": self.predictor.precision, "cxr_version": __version__,
                "max_upload_bytes": self.max_upload}

    def _read(self, file: UploadFile) -> tuple[bytes, str, np.ndarray]:
        """The upload's bytes, format and preprocessed image; an HTTP error naming the problem."""
        data = file.file.read(self.max_upload + 1)
        if len(data) > self.max_upload:
            raise HTTPException(413, f"upload is over the {self.max_upload // 2**20} MB limit")
        kind = sniff(data)
        if kind is None:
            raise HTTPException(415, f"{file.filename or 'upload'} is not a JPEG, PNG, DICOM, TIFF, BMP or GIF image "
                                     "(by its content)")
        try:
            return data, kind, self.predictor.decode(data)
        except ImageError as exc:
            raise HTTPException(422, f"{file.filename or 'upload'}: {exc}") from None

    def _explanation(self, data: bytes, image: np.ndarray, label: str) -> dict:
        from cxr.inference.explain import heatmap_rgba

        classes = self.predictor.info.classes
        found = self.explainer().explain(image[None], called=[label == classes[1]])
        return {"image_png": _png_base64(decode(data, self.predictor.preprocessing.at_size(DISPLAY_SIZE))),
                "explained_class": classes[int(found.explained[0])], "heatmap_caption": found.caption(0),
                "heatmap_blank": bool(found.blank[0]),
                "explanation": self.explainer().description,  # the method, layer, grid and members explained
                # A blank map is not drawn: the page shows the caption instead.
                "heatmap_png": None if found.blank[0] else _png_base64(heatmap_rgba(found.heatmaps[0], DISPLAY_SIZE))}

    def predict(self, file: UploadFile, explain: bool) -> dict:
        data, kind, image = self._read(file)
        row = self.score((file.filename or "upload", image))
        guard, feature_guard = self.predictor.guard, self.predictor.feature_guard
        result = {**{k: row[k] for k in ("probability", "label", "threshold", "ood", "ood_score", "feature_ood_score")},
                  "ood_cutoff": None if guard is None else round(guard.cutoff, 4),
                  "feature_ood_cutoff": None if feature_guard is None else round(feature_guard.cutoff, 4),
                  "model": self.model_id, "format": kind}
        return {**result, **(self._explanation(data, image, row["label"]) if explain else {})}


def create_app(run_dir: Path, engine: str = "keras", precision: str = "auto",
               max_upload: int = DEFAULT_MAX_UPLOAD) -> FastAPI:
    service = Service(run_dir, engine, precision, max_upload)
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
        return {"status": "ok", "model": service.model_id}

    @app.get("/api/model")
    def model_info():
        return service.model_info()

    @app.post("/api/predict")
    def predict(file: UploadFile = File(..., description="a chest X-ray: JPEG, PNG or DICOM"),
                explain: bool = Query(False, description="add an evidence map (HiResCAM, PNG, base64)")):
        return service.predict(file, explain)

    return app
