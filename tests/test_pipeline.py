"""Integration: the real pipeline on a small real subset of the shared X-rays, through the command line."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import FULLRES, run_cxr
from cxr.runs.info import RunInfo
from cxr.runs.record import TrainingRecord
from cxr.runs.results import Metrics

pytestmark = pytest.mark.integration
CXR = [sys.executable, "-m", "cxr.cli"]
cxr = run_cxr


def history_epochs(run):
    with open(run / "history.csv") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_train_evaluate_and_figures_on_real_xrays(trained_run, real_subset, tmp_path):
    run = trained_run
    for name in ("config.json", "split.csv", "history.csv", "model.keras", "model.json", "summary.txt",
                 "training.json", "metrics.json", "predictions.csv"):
        assert (run / name).is_file(), name
    for name in ("samples", "training_curves", "confusion_matrix", "roc"):  # drawn figures, not blank canvases
        with Image.open(run / "figures" / f"{name}.png") as figure:
            pixels = np.asarray(figure.convert("L"))
        assert min(pixels.shape) >= 300 and np.mean(pixels < 128) > 0.005, name
        assert len(np.unique(pixels)) > 20, name  # text, axes and data, not one flat colour
    assert not (run / "checkpoints").exists()

    metrics = Metrics.read(run)
    assert metrics.threshold == RunInfo.read(run).threshold  # chosen on validation at training time
    assert metrics.n == sum(metrics.confusion_matrix[0]) + sum(metrics.confusion_matrix[1])
    assert history_epochs(run) == [0, 1, 2]
    with open(run / "split.csv") as f:
        rows = list(csv.DictReader(f))
    sides = {}
    for row in rows:
        sides.setdefault(row["patient"], set()).add(row["split"])
    assert all(len(s) == 1 for s in sides.values())
    assert {row["split"] for row in rows} == {"train", "val", "test"}

    # A second run into the same folder is refused instead of overwriting it.
    again = cxr("train", "--data", real_subset, "--out", run, "--epochs", 1)
    assert again.returncode != 0 and "already holds a run" in again.stderr

    # Evaluation on any labelled folder, here the full-resolution radiographs.
    out = tmp_path / "fullres" / "metrics.json"
    result = cxr("evaluate", run, "--data", FULLRES, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert Metrics.read(out).n == 40
    assert "PNEUMONIA" in result.stdout  # the classification report


def test_training_resumes_after_the_process_is_killed(real_subset, tmp_path):
    run = tmp_path / "killed"
    args = ["train", "--model", "cnn", "--data", real_subset, "--out", run, "--epochs", 12, "--size", 64,
            "--precision", "float32"]
    process = subprocess.Popen([*CXR, "-q", *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    state = run / "checkpoints" / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline:
        if state.exists() and json.loads(state.read_text())["epoch"] >= 1:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done = json.loads(state.read_text())["epoch"]
    assert done < 11, "training finished before it could be killed"
    assert not (run / "model.keras").exists()

    result = cxr("train", "--resume", run)
    assert result.returncode == 0, result.stderr[-3000:]
    assert history_epochs(run) == list(range(12))  # every epoch exactly once, none repeated
    with open(run / "history.csv") as f:  # the schedule went on where the killed run left it
        rates = [float(row["learning_rate"]) for row in csv.DictReader(f)]
    np.testing.assert_allclose(rates, [1e-3 * 0.9**epoch for epoch in range(12)], rtol=1e-5)
    assert (run / "model.keras").is_file() and (run / "metrics.json").is_file()
    assert json.loads((run / "config.json").read_text())["epochs"] == 12


def test_transfer_model_trains_on_cached_features_then_fine_tunes(real_subset, tmp_path):
    run = tmp_path / "vgg16"
    result = cxr("train", "--model", "vgg16", "--data", real_subset, "--out", run, "--epochs", 2, "--size", 48,
                 "--fine-tune", 2, "--split", "pooled")
    assert result.returncode == 0, result.stderr[-3000:]
    assert TrainingRecord.read(run).feature_seconds > 0
    assert history_epochs(run) == [0, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]  # head, then fine-tuning (10 epochs)
    assert "VGG16" in RunInfo.read(run).weights_note
    # Fine-tuning trained the last two convolutions: they differ from the ImageNet weights now.
    import keras

    from cxr.runs.folder import load_keras_model

    model = load_keras_model(run / "model.keras")
    base = model.get_layer("vgg16")
    fresh = keras.applications.VGG16(weights=None, include_top=False, input_shape=(48, 48, 3))
    from cxr.models.pretrained import load_base_weights

    load_base_weights("vgg16", fresh)
    changed = [not np.array_equal(a, b) for a, b in zip(base.get_weights(), fresh.get_weights())]
    assert changed[-4:] == [True] * 4 and not any(changed[:-4])
