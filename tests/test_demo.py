"""`make demo` in miniature: the Makefile's own demo steps on a small real subset (one epoch, 48 px), then
the run it chose is served and answers a prediction. Whatever the demo chooses must be servable."""

import json
import re
from pathlib import Path

import pytest

from conftest import FULLRES, run_cxr
from cxr.testing import Server

pytestmark = pytest.mark.integration


def test_the_miniature_demo_serves_the_run_it_chose(demo_runs):
    runs, report = demo_runs / "runs", demo_runs / "report"
    output = (demo_runs / "output.txt").read_text()
    assert "ERROR" not in output
    # TensorFlow's warnings (retracing, deprecations, start-up notices) are noise to a user: none reach the output.
    noise = [line for line in output.splitlines() if re.search(r"tensorflow|retracing|^[WE]\d{4} ", line, re.I)]
    assert not noise, noise[:5]
    chosen = Path((report / "best_run.txt").read_text().strip())
    assert chosen.parent == runs and (chosen / "model.keras").is_file()
    assert (report / "report.html").is_file() and (report / "audit" / "audit.json").is_file()
    # Every run is stress-tested on the conditions the selection reads (framings and acquisition changes); the
    # report shows the other changes as not run rather than inventing a number.
    from cxr.evaluation.selection import CONDITIONS
    from cxr.runs.folder import read_json
    from cxr.runs.info import RunInfo
    from cxr.runs.results import Evidence, Stress

    for run in ("cnn", "cnn_aug", "vgg16", "densenet121_e2e", "mobilenetv2_e2e", "robust"):
        assert set(Stress.read_side(runs / run, "val").perturbations) == set(CONDITIONS[1:]), run
    assert "| cnn | " in (report / "report.md").read_text() and "not run" in (report / "report.md").read_text()
    compared = {Path(r["run"]).name: r for r in read_json(report / "comparison.json")}
    served = compared[chosen.name]
    assert set(served["validation_selection"]["by_condition"]) == set(CONDITIONS)
    # Served: a run built only from pretrained networks, whatever the from-scratch CNNs scored; the report says so.
    assert chosen.name in ("vgg16", "densenet121_e2e", "mobilenetv2_e2e", "robust") and served["from_scratch"] == []
    assert [name for name, r in compared.items() if not r["candidate"]] == ["cnn", "cnn_aug"]
    assert "never served" in (report / "report.md").read_text()
    # The served run's evidence audit, in its model card.
    evidence = Evidence.read(chosen)
    assert set(evidence.by_class) == {"NORMAL", "PNEUMONIA"} and len(evidence.grid) == 2
    assert "Where the evidence lies" in (chosen / "MODEL_CARD.md").read_text()
    # The robust model averages DenseNet121 and MobileNetV2, each fine-tuned end to end, and takes its threshold on the
    # worst framing, as its members do; a model trained without framing augmentation, near chance on some
    # framing at any threshold, keeps the screening rule.
    from cxr.evaluation.metrics import FRAMED_THRESHOLD_RULE, THRESHOLD_RULE

    robust = RunInfo.read(runs / "robust")
    members = [(runs / name).resolve() for name in ("densenet121_e2e", "mobilenetv2_e2e")]
    assert [m.run.resolve() for m in robust.members] == members
    card = (runs / "robust" / "MODEL_CARD.md").read_text()
    assert "mean logit of: `densenet121_e2e` (48 px), `mobilenetv2_e2e` (48 px)" in card
    for run in ("cnn_aug", "densenet121_e2e", "mobilenetv2_e2e", "robust"):
        assert RunInfo.read(runs / run).threshold_rule == FRAMED_THRESHOLD_RULE, run
    for seed_run in ("cnn", "vgg16"):
        assert RunInfo.read(runs / seed_run).threshold_rule.startswith(THRESHOLD_RULE)
    # Served, it answers as the command line does with the run's own threshold, in float32 on both sides.
    xray = FULLRES / "NORMAL" / "IM-0217-0001.jpeg"
    with Server(chosen, "--precision", "float32") as server:
        answer = server.predict(xray)
    predicted = json.loads(run_cxr("predict", chosen, xray, "--precision", "float32", "--format", "json").stdout)
    assert answer["probability"] == pytest.approx(predicted[0]["probability"], abs=1e-4)
    threshold = RunInfo.read(chosen).threshold
    assert answer["label"] == ("PNEUMONIA" if answer["probability"] >= threshold else "NORMAL") == predicted[0]["label"]
