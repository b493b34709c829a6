"""A user's own operating point: `--threshold` on evaluate and predict replaces the validation-chosen one."""

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
