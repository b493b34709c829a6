"""The HTTP service: every endpoint and every kind of bad input; the model keeps serving."""

import base64
import csv
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from conftest import FULLRES

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from cxr.inference.predictor import Predictor  # noqa: E402
from cxr.serve.app import create_app  # noqa: E402

pytestmark = pytest.mark.integration
XRAY = FULLRES / "PNEUMONIA" / "person26_bacteria_127.jpeg"


@pytest.fixture(scope="module")
def client(trained_run):
    return TestClient(create_app(trained_run, max_upload=2 * 2**20))


def post(client, name, data, **params):
    return client.post("/api/predict", files={"file": (name, data)}, params=params)


def test_health_model_and_docs(client, trained_run):
    assert client.get("/api/health").json()["status"] == "ok"
    info = client.get("/api/model").json()
    assert info["size"] == 64 and info["classes"] == ["NORMAL", "PNEUMONIA"] and 0 <= info["threshold"] <= 1
    assert client.get("/docs").status_code == 200
    assert "/api/predict" in client.get("/openapi.json").json()["paths"]
    page = client.get("/")
    assert page.status_code == 200 and "Not a diagnosis" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no external assets: works offline


def test_predict_matches_the_command_line_predictor(client, trained_run):
    response = post(client, "x.jpeg", XRAY.read_bytes())
    assert response.status_code == 200
    body = response.json()
    from cxr.inference.batch import predict_paths

    rows, _ = predict_paths(Predictor(trained_run), [XRAY])
    assert body["probability"] == pytest.approx(rows[0]["probability"], abs=1e-5)
    assert body["label"] == rows[0]["label"] and body["threshold"] == rows[0]["threshold"]
    assert set(body) >= {"probability", "label", "threshold", "model", "ood", "feature_ood_score", "feature_ood_cutoff"}
    assert body["feature_ood_score"] >= 0 and body["feature_ood_cutoff"] > 0  # the run's feature guard answers


def test_explain_adds_image_and_heatmap_pngs(client):
    body = post(client, "x.jpeg", XRAY.read_bytes(), explain="true").json()
    assert body["explained_class"] == body["label"] and body["heatmap_caption"] == f"evidence for {body['label']}"
    assert body["heatmap_blank"] is False
    assert body["explanation"]["method"] == "HiResCAM" and min(body["explanation"]["grid"]) >= 1
    heatmap = Image.open(io.BytesIO(base64.b64decode(body["heatmap_png"])))
    image = Image.open(io.BytesIO(base64.b64decode(body["image_png"])))
    assert heatmap.mode == "RGBA" and heatmap.size == image.size


def test_dicom_upload(client, tmp_path):
    from test_dicom import write_dicom

    pixels = np.asarray(Image.open(XRAY).convert("L")).astype(np.uint16) * 16
    response = post(client, "scan", write_dicom(tmp_path / "x.dcm", pixels, bits=12).read_bytes())
    assert response.status_code == 200 and response.json()["format"] == "dicom"


def jpeg_bytes(size=(64, 64)):
    buffer = io.BytesIO()
    Image.new("L", size, 128).save(buffer, format="JPEG")
    return buffer.getvalue()


def bomb_png():
    buffer = io.BytesIO()
    Image.new("1", (30_000, 30_000)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name, data, status, words",
    [
        ("big.jpeg", b"\xff\xd8\xff" + b"\0" * (2 * 2**20 + 10), 413, "limit"),
        ("fake.png", b"this is a text file with an image name", 415, "not a JPEG, PNG, DICOM"),
        ("cut.jpeg", jpeg_bytes()[:200], 422, "truncated"),
        ("bomb.png", bomb_png(), 422, "decompression bomb"),
        ("tiny.jpeg", jpeg_bytes((4, 4)), 422, "only 4x4"),
    ],
)
def test_bad_uploads_get_a_readable_json_error_and_the_server_keeps_serving(client, name, data, status, words):
    response = post(client, name, data)
    assert response.status_code == status
    assert words in response.json()["error"]
    assert post(client, "x.jpeg", XRAY.read_bytes()).status_code == 200


def test_missing_file_field_is_a_json_error(client):
    response = client.post("/api/predict")
    assert response.status_code == 422 and "detail" in response.json()


def test_concurrent_requests_get_their_own_answers(client):
    images = [XRAY.read_bytes(), (FULLRES / "NORMAL" / "IM-0217-0001.jpeg").read_bytes()] * 8
    expected = [post(client, "a.jpeg", images[0]).json()["probability"],
                post(client, "b.jpeg", images[1]).json()["probability"]]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda data: post(client, "x.jpeg", data).json()["probability"], images))
    assert answers == expected * 8


def test_evaluate_predict_and_the_api_give_identical_probabilities(client, trained_run, tmp_path):
    """One prediction path: the numbers a report shows are the numbers a user is served."""
    from conftest import run_cxr

    out = tmp_path / "metrics.json"
    assert run_cxr("evaluate", trained_run, "--data", FULLRES, "--out", out).returncode == 0
    with open(tmp_path / "predictions.csv", newline="") as f:
        evaluated = {row["file"]: float(row["probability"]) for row in csv.DictReader(f)}
    predicted = run_cxr("predict", trained_run, FULLRES)
    rows = {row["path"]: float(row["probability"]) for row in csv.DictReader(io.StringIO(predicted.stdout))}
    assert len(evaluated) == len(rows) == 40
    for path in sorted(rows)[::8]:
        served = post(client, "x.jpeg", open(path, "rb").read()).json()["probability"]
        assert served == pytest.approx(rows[path], abs=2e-6) and evaluated[path] == pytest.approx(rows[path], abs=2e-6)
    assert evaluated.keys() == rows.keys()
    assert max(abs(evaluated[p] - rows[p]) for p in rows) <= 2e-6


def test_model_info_carries_the_preprocessing_contract(client):
    prep = client.get("/api/model").json()["preprocessing"]
    assert prep == {"size": 64, "resize": "squash", "intensity": "exact", "border": "frame", "version": 1}
