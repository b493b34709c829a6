"""A user's own operating point: `--threshold` on evaluate and predict replaces the validation-chosen one; and
the precision they ask for."""

import json

import pytest

from conftest import FULLRES
from cxr.runs.results import Metrics
from cxr.testing import run_cxr_commands

pytestmark = pytest.mark.integration


def test_evaluate_and_predict_use_the_threshold_the_user_gives(trained_run, tmp_path):
    metrics, predicted = tmp_path / "metrics.json", tmp_path / "predicted.json"
    codes, result = run_cxr_commands(  # one process, as a user's script runs them
        ["evaluate", trained_run, "--data", FULLRES, "--out", metrics, "--threshold", 0.0],
        ["predict", trained_run, FULLRES / "NORMAL", "--threshold", 1.0, "--format", "json", "--out", predicted],
        ["predict", trained_run, FULLRES / "NORMAL", "--threshold", 1.5])
    assert codes == [0, 0, 1], result.stderr[-2000:]
    report = Metrics.read(metrics)
    assert report.threshold == 0.0 and report.sensitivity == 1.0 and report.specificity == 0.0
    assert "user" in report.threshold_rule
    rows = json.loads(predicted.read_text())
    assert rows and all(r["label"] == "NORMAL" and r["threshold"] == 1.0 for r in rows)
    assert "between 0 and 1" in result.stderr


def test_evaluate_computes_in_the_precision_the_user_asks_for(trained_run, tmp_path):
    """`--precision float32` gives the numbers every CPU and the ONNX export give: the same probabilities as
    `cxr predict --precision float32`, whatever the CPU's fast precision is."""
    from sklearn.metrics import roc_auc_score

    metrics, predicted = tmp_path / "metrics.json", tmp_path / "predicted.json"
    codes, result = run_cxr_commands(
        ["evaluate", trained_run, "--data", FULLRES, "--out", metrics, "--precision", "float32"],
        ["predict", trained_run, FULLRES, "--precision", "float32", "--format", "json", "--out", predicted])
    assert codes == [0, 0], result.stderr[-2000:]
    report = Metrics.read(metrics)
    assert report.compute_precision == "float32"
    rows = json.loads(predicted.read_text())
    labels = [int("PNEUMONIA" in r["path"]) for r in rows]
    assert report.roc_auc == pytest.approx(roc_auc_score(labels, [r["probability"] for r in rows]), abs=1e-9)
