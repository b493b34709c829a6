"""Using a trained model: predict on files, folders, globs and DICOM; Grad-CAM; ONNX export and engine."""

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import FULLRES, run_cxr, writable_copy
from cxr.inference.batch import SKIPPED_EXIT_CODE
from cxr.inference.predictor import Predictor
from cxr.runs.info import RunInfo
from cxr.testing import run_cxr_commands

pytestmark = pytest.mark.integration


def rows_of(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_predict_folder_glob_and_bad_files(trained_run, tmp_path):
    bad = tmp_path / "broken.jpeg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = run_cxr("predict", trained_run, FULLRES / "NORMAL", str(FULLRES / "PNEUMONIA" / "person2*.jpeg"),
                     bad, tmp_path / "missing.png")
    assert result.returncode == SKIPPED_EXIT_CODE
    rows = rows_of(result.stdout)
    assert len(rows) == 20 + 2  # all NORMAL, and person26_... and person298_... from the glob
    assert {r["label"] for r in rows} <= {"NORMAL", "PNEUMONIA"}
    threshold = RunInfo.read(trained_run).threshold
    for r in rows:
        p = float(r["probability"])
        assert 0 <= p <= 1 and r["label"] == ("PNEUMONIA" if p >= threshold else "NORMAL")
    assert f"skipped {bad}" in result.stderr and "missing.png: file not found" in result.stderr


def test_predict_json_to_a_file_never_overwrites(trained_run, tmp_path):
    out = tmp_path / "p.json"
    image = FULLRES / "PNEUMONIA" / "person26_bacteria_127.jpeg"
    codes, result = run_cxr_commands(["predict", trained_run, image, "--format", "json", "--out", out],
                                     ["predict", trained_run, image, "--out", out])  # again: refused
    assert codes == [0, 1] and "already exists" in result.stderr, result.stderr[-2000:]
    rows = json.loads(out.read_text())  # the first answer, kept
    assert rows[0]["path"].endswith("person26_bacteria_127.jpeg") and set(rows[0]) == {
        "path", "probability", "label", "threshold", "ood", "ood_score", "feature_ood_score"}
    assert isinstance(rows[0]["ood"], bool) and rows[0]["ood_score"] > 0 and rows[0]["feature_ood_score"] > 0


def test_dicom_of_an_xray_predicts_like_the_same_pixels_as_png(trained_run, tmp_path):
    from test_dicom import write_dicom

    pixels = np.asarray(Image.open(FULLRES / "NORMAL" / "IM-0217-0001.jpeg").convert("L"))
    Image.fromarray(pixels).save(tmp_path / "same.png")
    write_dicom(tmp_path / "same.dcm", pixels.astype(np.uint16) * 16, bits=12)  # 12-bit, no extension needed
    predictor = Predictor(trained_run)
    from cxr.inference.batch import predict_paths

    rows, skipped = predict_paths(predictor, [tmp_path / "same.png", tmp_path / "same.dcm"])
    assert not skipped
    assert abs(rows[0]["probability"] - rows[1]["probability"]) < 0.02


def test_explain_writes_a_map_png_per_image(trained_run, tmp_path):
    result = run_cxr("predict", trained_run, FULLRES / "PNEUMONIA", "--explain", tmp_path / "cam")
    assert result.returncode == 0, result.stderr[-2000:]
    pngs = sorted((tmp_path / "cam").glob("*_cam.png"))
    assert len(pngs) == 20
    assert Image.open(pngs[0]).size[0] > 400


def test_onnx_export_agrees_with_keras_on_real_xrays(trained_run, tmp_path):
    run = writable_copy(trained_run, tmp_path / "run")  # the shared run stays as trained
    result = run_cxr("export", run, "--format", "onnx")
    assert result.returncode == 0, result.stderr[-2000:]
    meta = json.loads((run / "model.onnx.json").read_text())  # what another program reads
    for key in ("size", "preprocessing", "classes", "threshold", "weights_sha256", "cxr_version", "weights_note"):
        assert key in meta
    assert RunInfo.read_onnx(run) == RunInfo.read(run)  # a view of the same facts
    keras_rows = rows_of(run_cxr("predict", run, FULLRES, "--precision", "float32").stdout)
    onnx_rows = rows_of(run_cxr("predict", run, FULLRES, "--engine", "onnx").stdout)
    assert len(keras_rows) == len(onnx_rows) == 40
    for k, o in zip(keras_rows, onnx_rows):
        assert k["path"] == o["path"]
        assert abs(float(k["probability"]) - float(o["probability"])) < 1e-4
    # The ONNX path starts fast: it never imports TensorFlow or Keras.
    one = FULLRES / "NORMAL" / "IM-0217-0001.jpeg"
    code = (f"import sys; from cxr.cli import main; main(['-q', 'predict', {str(run)!r}, {str(one)!r}, "
            "'--engine', 'onnx']); sys.exit(int('tensorflow' in sys.modules or 'keras' in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0

    again = run_cxr("export", run)
    assert again.returncode != 0 and "already exists" in again.stderr

    # A changed ONNX file no longer matches its metadata and is refused.
    with open(run / "model.onnx", "ab") as f:
        f.write(b"\0")
    tampered = run_cxr("predict", run, FULLRES / "NORMAL", "--engine", "onnx")
    assert tampered.returncode != 0 and "does not match" in tampered.stderr
    assert run_cxr("export", run, "--force").returncode == 0


def test_bfloat16_inference_stays_close_to_float32(trained_run):
    from cxr.data.cache import load_images
    from cxr.data.preprocess import Preprocessing

    images = load_images(sorted((FULLRES / "NORMAL").iterdir())[:8], Preprocessing(64), use_cache=False).images
    exact = Predictor(trained_run).predict(images)
    fast = Predictor(trained_run, precision="mixed_bfloat16").predict(images)
    np.testing.assert_allclose(fast, exact, atol=2e-2)


def test_images_of_another_size_are_refused_not_cut_into_pieces(trained_run):
    """A 64 px run handed 128 px images would otherwise read each as four 64 px ones."""
    predictor = Predictor(trained_run)
    one = np.full((64, 64), 120, np.uint8)
    assert predictor.predict(one).shape == (1,)
    np.testing.assert_allclose(predictor.predict(np.stack([one, one])[..., None]), predictor.predict(one)[[0, 0]])
    with pytest.raises(ValueError, match="64 x 64 px"):
        predictor.predict(np.zeros((2, 128, 128, 1), np.uint8))
