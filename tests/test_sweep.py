"""`cxr sweep` on a local Ray: normal run folders per trial, ASHA, a report ranked on validation, resume."""

import csv
from pathlib import Path

import pytest

from conftest import run_cxr

pytest.importorskip("ray")


def test_a_small_sweep_ranks_its_trials_and_resumes(real_subset, tmp_path):
    config = tmp_path / "sweep.toml"
    config.write_text(f"""
[train]
data = "{real_subset}"
model = "cnn"
size = 64
epochs = 3
split = "pooled"

[grid]
seed = [1, 2]

[sweep]
cpus_per_trial = 1
grace_period = 1
""")
    out = tmp_path / "sweep"
    first = run_cxr("sweep", config, "--out", out)
    assert first.returncode == 0, first.stderr[-3000:]
    with open(out / "trials.csv", newline="") as f:
        trials = list(csv.DictReader(f))
    assert sorted(t["seed"] for t in trials) == ["1", "2"]
    assert all(t["status"] in ("finished", "stopped early by ASHA") for t in trials)
    losses = [float(t["best_val_loss"]) for t in trials]
    assert losses == sorted(losses)  # ranked on validation loss
    best = Path((out / "best_run.txt").read_text().strip())
    assert best.parent == (out / "trials").resolve() and (best / "model.json").exists()  # a normal run folder
    assert "| 1 |" in (out / "report.md").read_text()

    again = run_cxr("sweep", config, "--out", out)  # an existing sweep is resumed, not started over
    assert again.returncode == 0, again.stderr[-3000:]
    with open(out / "trials.csv", newline="") as f:
        assert [t["best_val_loss"] for t in csv.DictReader(f)] == [t["best_val_loss"] for t in trials]
