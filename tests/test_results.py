"""The typed result files of a run (cxr.runs.results, cxr.runs.site_check_result): what a producer writes reads
back equal, every older form cxr wrote still reads, and a damaged file is an error naming the file and the field."""

import json

import numpy as np
import pytest

from cxr.errors import RunError
from cxr.evaluation.metrics import binary_metrics, full_report
from cxr.runs.results import Evidence, Metrics, Stress
from cxr.runs.site_check_result import SiteCheck

ROW = {"roc_auc": 0.9, "accuracy": 0.85, "sensitivity": 0.9, "specificity": 0.8}
# stress.json as the first `cxr stress` wrote it: no NORMAL-flip counts, no text probe, a photometric default of 0.
FIRST_STRESS = {"run": "runs/x", "side": "test", "images": 40, "sampled": False, "precision": "float32",
                "threshold": 0.5, "preprocessing": {"size": 64, "resize": "squash", "intensity": "none",
                                                    "border": "none", "version": 1},
                "baseline": ROW, "perturbations": {"gamma_0.7": {"kind": "photometric", **ROW, "roc_auc_change": 0.0}},
                "shortcut_probe_auc": 0.55, "worst_photometric_auc_change": 0.0, "mean_roc_auc": 0.9}
SHARES = {"lungs": 0.6, "above": 0.1, "below": 0.1, "beside": 0.1, "border": 0.1}
EVIDENCE = {"run": "runs/x", "data": "validation split", "images": 10, "method": "HiResCAM", "layer": "conv",
            "grid": [8, 8], "members": [], "regions": {"lungs": "the lung-field box"}, "lung_box_found": 0.9,
            "blank_maps": 0, "area": SHARES, "by_class": {"NORMAL": SHARES, "PNEUMONIA": None},
            "by_call": {"true PNEUMONIA": {"images": 0, "shares": None}}}


def _metrics_dict() -> dict:
    labels = np.array([0, 1] * 20)
    probs = np.linspace(0.0, 1.0, 40)
    return {**full_report(labels, probs, 0.4), "calibration": {"brier": 0.1, "ece": 0.05},
            "ood_flagged": {"pixel": 0.0, "feature": None, "either": 0.0}, "model": "cnn", "data": "test split",
            "predict_images_per_s": 100.0, "compute_precision": "float32", "skipped": [("a.jpeg", "not an image")]}


def test_metrics_written_read_back_equal_with_every_metric_and_its_interval(tmp_path):
    written = Metrics.from_dict(_metrics_dict(), "memory")
    path = written.write(tmp_path / Metrics.FILE)
    assert path == tmp_path / "metrics.json"
    read = Metrics.read(tmp_path)
    assert read == written and read.at_half.threshold == 0.5 and read.ci95_resamples.startswith("images")
    assert read.precision == binary_metrics([0, 1] * 20, np.linspace(0.0, 1.0, 40), 0.4)["precision"]
    low, high = read.ci95["accuracy"]
    assert read.with_interval("accuracy") == f"{read.accuracy:.3f} [{low:.3f}, {high:.3f}]"
    assert json.loads(path.read_text())["at_0.5"]["threshold"] == 0.5  # the file keeps its key


def test_older_metrics_read_their_compute_precision_and_their_predictive_value_off_the_counts(tmp_path):
    """Until the typed file, `precision` held "float32" (the predictive value was overwritten by it)."""
    old = {k: v for k, v in _metrics_dict().items() if k not in ("compute_precision", "ci95_resamples",
                                                                  "ood_flagged", "calibration")}
    old["precision"] = "float32"
    old["confusion_matrix"] = [[15, 5], [1, 19]]  # tn, fp / fn, tp
    (tmp_path / "metrics.json").write_text(json.dumps(old))
    read = Metrics.read(tmp_path)
    assert read.compute_precision == "float32" and read.precision == pytest.approx(19 / 24)
    assert read.calibration is None and read.ood_flagged == {} and read.ci95_resamples == "images"


def test_stress_reads_its_first_form_and_writes_each_side_to_its_own_file(tmp_path):
    Stress.path(tmp_path).write_text(json.dumps(FIRST_STRESS))
    first = Stress.read_side(tmp_path)
    gamma = first.perturbations["gamma_0.7"]
    assert gamma.kind == "photometric" and gamma.normal_flipped is None and first.text_probe is None
    assert first.preprocessing.size == 64 and first.baseline.balanced_accuracy == pytest.approx(0.85)
    assert Stress.path(tmp_path, "val") == tmp_path / "stress_val.json"
    val = Stress.create({**FIRST_STRESS, "side": "val"}, Stress.path(tmp_path, "val"))
    assert Stress.read_side(tmp_path, "val") == val and Stress.read_side(tmp_path) == first


def test_evidence_and_site_check_round_trip(tmp_path):
    evidence = Evidence.from_dict(EVIDENCE, "memory")
    assert Evidence.read(evidence.write(tmp_path / Evidence.FILE)) == evidence
    assert evidence.by_class["PNEUMONIA"] is None
    check = SiteCheck.from_dict(
        {"folder": "site", "run": "runs/x", "verdict": "same", "why": "no test tells it apart", "images": 30,
         "validation_images": 60, "guard_rate": 0.0, "validation_guard_rate": 0.01, "alpha": 0.05,
         "feature_shift": {"domain_classifier_auc": 0.5, "domain_classifier_p_value": 0.6, "mmd2": 0.0,
                           "mmd_p_value": 0.7},
         "output_shift": {"ks": 0.1, "ks_p_value": 0.8, "predicted_prevalence": 0.7,
                          "validation_predicted_prevalence": 0.72, "training_prevalence": 0.73},
         "acquisition": {"mean": {"validation_median": 120.0, "folder_median": 121.0, "ks": 0.1, "p_value": 0.9}},
         "p_values": {"guard rate": 1.0}, "estimated_accuracy": 0.9, "estimate_note": "ATC alone"}, "memory")
    assert SiteCheck.read(check.write(tmp_path / "check" / SiteCheck.FILE)) == check
    assert check.estimate is None and check.accuracy is None and check.acquisition["mean"].folder_median == 121.0


@pytest.mark.parametrize(("damage", "field"), [
    (lambda d: d.pop("baseline"), "'baseline'"),
    (lambda d: d["perturbations"]["gamma_0.7"].update(roc_auc="high"), "'perturbations.gamma_0.7.roc_auc'"),
    (lambda d: d.update(preprocessing={"size": 64, "resize": "stretch"}), "'preprocessing'"),
])
def test_a_damaged_file_is_an_error_naming_the_file_and_the_field(tmp_path, damage, field):
    raw = json.loads(json.dumps(FIRST_STRESS))
    damage(raw)
    Stress.path(tmp_path).write_text(json.dumps(raw))
    with pytest.raises(RunError, match=f"stress.json: field {field}"):
        Stress.read_side(tmp_path)


def test_a_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(RunError, match="evidence.json: not found"):
        Evidence.read(tmp_path)
