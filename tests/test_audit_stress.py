"""The shortcut probe, `cxr audit` and `cxr stress`: synthetic cues for logic, a small real subset for commands."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import run_cxr, writable_copy
from cxr.evaluation.probe import shortcut_probe
from cxr.evaluation.stress import PERTURBATIONS, _sample
from cxr.runs.results import Stress


def noisy_images(n, seed):
    return np.random.default_rng(seed).integers(60, 200, (n, 64, 64)).astype(np.uint8)


def test_probe_finds_a_planted_border_cue_and_nothing_in_noise():
    labels = np.arange(200) % 2
    images = noisy_images(200, 0)
    assert shortcut_probe(images, labels) < 0.65
    framed = images.copy()
    framed[labels == 0, :, :5] = 0  # black collimation border on the left of every NORMAL image
    assert shortcut_probe(framed, labels) > 0.95


def test_every_perturbation_keeps_an_image_an_image():
    image = np.clip(np.random.default_rng(2).normal(120, 40, (90, 120)), 0, 255).astype(np.uint8)
    kinds = {kind for kind, _ in PERTURBATIONS.values()}
    assert len(PERTURBATIONS) >= 8 and kinds == {"photometric", "geometric", "acquisition"}
    for name, (_, change) in PERTURBATIONS.items():
        out = change(image)
        assert out.dtype == np.uint8 and out.ndim == 2 and min(out.shape) >= 8, name
        assert not np.array_equal(out, image), f"{name} changed nothing"


@pytest.mark.integration
def test_audit_on_real_xrays_flags_the_raw_cue(real_subset, tmp_path):
    result = run_cxr("audit", real_subset, "--out", tmp_path / "audit")
    assert result.returncode == 0, result.stderr[-2000:]
    audit = json.loads((tmp_path / "audit" / "audit.json").read_text())
    counts = {(r["split"], r["class"]): r["images"] for r in audit["inventory"]}
    assert counts == {("train", "NORMAL"): 60, ("train", "PNEUMONIA"): 60}
    probes = audit["shortcut_probe"]
    assert probes["raw"]["auc"] > 0.7 and probes["preprocessed"]["auc"] < 0.65
    assert audit["aspect_ratio_auc"] is None  # the shared copies are all 224 x 224
    assert (tmp_path / "audit" / "audit.png").stat().st_size > 5000 and "Shortcut probe" in result.stdout
    framing = audit["framing_probe"]
    assert set(framing) == {"raw", "preprocessed", "raw, framing augmentation"}
    for probe in framing.values():
        assert 0 <= probe["auc"] <= 1 and set(probe["feature_auc"]) >= {"height", "width", "aspect"}
        assert min(probe["lungs_found"].values()) > 0.8  # the lungs are found in most real X-rays
    for figure in ("framing_probe.png", "lung_boxes.png"):
        assert (tmp_path / "audit" / figure).stat().st_size > 5000
    assert "Framing probe" in result.stdout
    text = audit["text_probe"]
    assert text["normal_images"] == 60 and 0 <= text["called_pneumonia_after"] <= 1
    assert "Burned-in text probe" in result.stdout
    assert "oneDNN" not in result.stderr and "absl" not in result.stderr  # `-q`: no TensorFlow start-up lines


@pytest.mark.integration
def test_stress_writes_every_perturbation_for_the_run(trained_run, tmp_path):
    run = writable_copy(trained_run, tmp_path / "run")  # the shared run stays as trained
    result = run_cxr("stress", run)
    assert result.returncode == 0, result.stderr[-2000:]
    stress = Stress.read_side(run)
    assert set(stress.perturbations) == set(PERTURBATIONS)
    for p in stress.perturbations.values():
        assert p.kind in ("photometric", "geometric", "acquisition") and 0 <= p.accuracy <= 1
        assert 0 <= p.roc_auc <= 1 and p.roc_auc_change == pytest.approx(p.roc_auc - stress.baseline.roc_auc)
    assert 0 <= stress.shortcut_probe_auc <= 1 and stress.side == "test" and not stress.sampled
    assert (run / "figures" / "stress.png").stat().st_size > 5000
    assert "width_shrunk_25%" in result.stdout
    # The burned-in text probe: among NORMAL X-rays called NORMAL, how many annotations turn into PNEUMONIA.
    probe = stress.text_probe
    assert probe.change == "burned_in_text" and probe.normal_called_normal >= 0
    assert probe.flipped_to_pneumonia is None or 0 <= probe.flipped_to_pneumonia <= 1


def test_a_stress_sample_keeps_the_class_balance_and_is_repeatable():
    records = [SimpleNamespace(label=int(i % 4 == 0), name=i) for i in range(400)]  # 25% class 1
    sample = _sample(records, 100)
    assert len(sample) == 100 and sum(r.label for r in sample) == 25
    assert [r.name for r in sample] == [r.name for r in _sample(records, 100)]
    assert _sample(records, 1000) == records


@pytest.mark.integration
def test_stress_of_several_runs_writes_both_sides_for_each(trained_run, tmp_path):
    one, twin = (writable_copy(trained_run, tmp_path / name) for name in ("one", "twin"))
    result = run_cxr("stress", "--images", 12, "--precision", "float32", one, twin)
    assert result.returncode == 0, result.stderr[-2000:]
    for run in (one, twin):
        for side in ("test", "val"):
            stress = Stress.read_side(run, side)
            assert stress.side == side and stress.sampled and stress.images <= 12
    # The same model on the same sampled images: the same figures.
    assert Stress.read_side(twin).perturbations == Stress.read_side(one).perturbations


@pytest.mark.integration
def test_runs_sharing_split_and_preprocessing_decode_each_side_once(trained_run, tmp_path, monkeypatch):
    import cxr.evaluation.stress as stress
    from cxr.inference.predictor import Predictor

    one, twin = (writable_copy(trained_run, tmp_path / name) for name in ("one", "twin"))
    decoded, read = [], stress.read_grayscale
    monkeypatch.setattr(stress, "read_grayscale", lambda data, size: decoded.append(1) or read(data, size))
    monkeypatch.setattr(stress, "_LAST_INPUTS", {})
    sides = {}
    for run in (one, twin):  # as `cxr stress RUN RUN` does: test, then validation, run after run
        predictor = Predictor(run, precision="float32")
        for side in ("test", "val"):
            sides[side] = stress.stress_run(run, side=side, predictor=predictor, images=8).images
    assert len(decoded) == sides["test"] + sides["val"]
