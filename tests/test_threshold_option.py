"""A user's own operating point: `--threshold` on evaluate and predict replaces the validation-chosen one; and
the precision they ask for."""

import json

import pytest

from conftest import FULLRES, run_cxr

pytestmark = pytest.mark.integration


def test_evaluate_and_predict_use_the_threshold_the_user_gives(trained_run, tmp_path):
    out = tmp_path / "metrics.json"
    assert run_cxr("evaluate", trained_run, "--data", FULLRES, "--out", out, "--threshold", 0.0).returncode == 0
    report = json.loads(out.read_text())
    assert report["threshold"] == 0.0 and report["sensitivity"] == 1.0 and report["specificity"] == 0.0
    assert "user" in report["threshold_rule"]
    predicted = run_cxr("predict", trained_run, FULLRES / "NORMAL", "--threshold", 1.0, "--format", "json")
    rows = json.loads(predicted.stdout)
    assert rows and all(r["label"] == "NORMAL" and r["threshold"] == 1.0 for r in rows)
    bad = run_cxr("predict", trained_run, FULLRES / "NORMAL", "--threshold", 1.5)
    assert bad.returncode == 1 and "between 0 and 1" in bad.stderr


def test_evaluate_computes_in_the_precision_the_user_asks_for(trained_run, tmp_path):
    """`--precision float32` gives the numbers every CPU and the ONNX export give: the same probabilities as
    `cxr predict --precision float32`, whatever the CPU's fast precision is."""
    from sklearn.metrics import roc_auc_score

    out = tmp_path / "metrics.json"
    result = run_cxr("evaluate", trained_run, "--data", FULLRES, "--out", out, "--precision", "float32")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["precision"] == "float32"
    rows = json.loads(run_cxr("predict", trained_run, FULLRES, "--precision", "float32", "--format", "json").stdout)
    labels = [int("PNEUMONIA" in r["path"]) for r in rows]
    assert report["roc_auc"] == pytest.approx(roc_auc_score(labels, [r["probability"] for r in rows]), abs=1e-9)
