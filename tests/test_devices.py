"""`cxr train --devices 2`: MirroredStrategy over two logical CPU devices trains the same model as one device."""

import csv

from conftest import run_cxr
from cxr.runs.record import TrainingRecord


def _history(run):
    with open(run / "history.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_two_devices_train_like_one(real_subset, tmp_path):
    runs = {}
    for devices in (1, 2):
        run = tmp_path / f"devices{devices}"
        result = run_cxr("train", "--model", "cnn", "--data", real_subset, "--out", run, "--size", 64, "--epochs", 3,
                         "--split", "pooled", "--seed", 3, "--devices", devices)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[devices] = run
    assert TrainingRecord.read(runs[2]).replicas == 2
    one, two = _history(runs[1]), _history(runs[2])
    assert len(one) == len(two) == 3
    # Same batches, gradients averaged over the replicas; only the dropout masks differ between the two.
    assert abs(one[0]["loss"] - two[0]["loss"]) < 0.01
    assert all(abs(a["val_loss"] - b["val_loss"]) < 0.02 for a, b in zip(one, two))
