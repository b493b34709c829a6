"""`make demo` in miniature: the Makefile's own demo steps on a small real subset (one epoch, 48 px), then
the run it chose is served and answers a prediction. Whatever the demo chooses must be servable."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FULLRES
from cxr.testing import ROOT, Server

pytestmark = pytest.mark.integration


def test_the_miniature_demo_serves_the_run_it_chose(real_subset, tmp_path, monkeypatch):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    monkeypatch.setenv("CXR_DATA", str(real_subset))
    runs, report = tmp_path / "runs", tmp_path / "report"
    cxr = f"{sys.executable} -m cxr.cli"
    result = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "demo-steps", f"CXR={cxr}",
                             f"RUNS={runs}", f"REPORT={report}", "DEMO_FLAGS=--epochs 1 --size 48"],
                            capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "ERROR" not in result.stdout + result.stderr
    chosen = Path((report / "best_run.txt").read_text().strip())
    assert chosen.parent == runs and (chosen / "model.keras").is_file()
    assert (report / "report.html").is_file() and (report / "audit" / "audit.json").is_file()
    # Every run is stress-tested on the conditions the selection reads (framings and acquisition changes); the
    # report shows the other changes as not run rather than inventing a number.
    from cxr.evaluation.selection import CONDITIONS
    from cxr.runs.folder import read_json
    from cxr.runs.info import RunInfo

    for run in ("cnn", "cnn_aug", "vgg16", "vgg16_e2e", "mobilenetv2_e2e", "robust"):
        assert set(read_json(runs / run / "stress_val.json")["perturbations"]) == set(CONDITIONS[1:]), run
    assert "| cnn | " in (report / "report.md").read_text() and "not run" in (report / "report.md").read_text()
    compared = {Path(r["run"]).name: r for r in read_json(report / "comparison.json")}
    served = compared[chosen.name]
    assert set(served["validation_selection"]["by_condition"]) == set(CONDITIONS)
    # Served: a run built only from pretrained networks, whatever the from-scratch CNNs scored; the report says so.
    assert chosen.name in ("vgg16", "vgg16_e2e", "mobilenetv2_e2e", "robust") and served["from_scratch"] == []
    assert [name for name, r in compared.items() if not r["candidate"]] == ["cnn", "cnn_aug"]
    assert "never served" in (report / "report.md").read_text()
    # The served run's evidence audit, in its model card.
    evidence = read_json(chosen / "evidence.json")
    assert set(evidence["by_class"]) == {"NORMAL", "PNEUMONIA"} and len(evidence["grid"]) == 2
    assert "Where the evidence lies" in (chosen / "MODEL_CARD.md").read_text()
    # The robust model averages VGG16 and MobileNetV2, each fine-tuned end to end, and takes its threshold on the
    # worst framing, as its members do; a model trained without framing augmentation, near chance on some
    # framing at any threshold, keeps the screening rule.
    from cxr.evaluation.metrics import FRAMED_THRESHOLD_RULE, THRESHOLD_RULE

    robust = RunInfo.read(runs / "robust")
    members = [(runs / name).resolve() for name in ("vgg16_e2e", "mobilenetv2_e2e")]
    assert [m.run.resolve() for m in robust.members] == members
    card = (runs / "robust" / "MODEL_CARD.md").read_text()
    assert "mean logit of: `vgg16_e2e` (48 px), `mobilenetv2_e2e` (48 px)" in card
    for run in ("cnn_aug", "vgg16_e2e", "mobilenetv2_e2e", "robust"):
        assert RunInfo.read(runs / run).threshold_rule == FRAMED_THRESHOLD_RULE, run
    for seed_run in ("cnn", "vgg16"):
        assert RunInfo.read(runs / seed_run).threshold_rule.startswith(THRESHOLD_RULE)
    with Server(chosen) as server:
        answer = server.predict(FULLRES / "NORMAL" / "IM-0217-0001.jpeg")
    assert 0.0 <= answer["probability"] <= 1.0 and answer["label"] in ("NORMAL", "PNEUMONIA")
