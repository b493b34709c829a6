"""Batch prediction on a local Ray: the same rows as the local path, bad files reported, dead workers replaced."""

import csv
import os
import signal

import pytest

from conftest import FULLRES, run_cxr

ray = pytest.importorskip("ray")


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(text.splitlines()))


def test_ray_predict_writes_the_same_rows_as_the_local_path(trained_run, tmp_path):
    bad = tmp_path / "broken.jpeg"
    bad.write_bytes(b"\xff\xd8\xff not really a JPEG")
    local = run_cxr("predict", trained_run, FULLRES, bad)
    on_ray = run_cxr("predict", trained_run, FULLRES, bad, "--ray", "--workers", 2)
    assert local.returncode == on_ray.returncode == 3, on_ray.stderr[-3000:]
    a, b = _rows(local.stdout), _rows(on_ray.stdout)
    assert len(a) == 40 and [r["path"] for r in a] == [r["path"] for r in b]
    for x, y in zip(a, b):
        assert abs(float(x["probability"]) - float(y["probability"])) <= 1e-5
        assert (x["label"], x["ood"]) == (y["label"], y["ood"])
    assert sum(f"skipped {bad}" in line for line in on_ray.stderr.splitlines()) == 1


def _scoring_workers() -> list:
    import psutil

    return [p for p in psutil.process_iter(["cmdline"]) if "_Scorer" in " ".join(p.info["cmdline"] or [])]


def test_a_worker_killed_mid_batch_is_replaced_and_every_row_comes_once(trained_run, tmp_path):
    from cxr.inference.ray_batch import ray_batches
    from cxr.runs.folder import run_preprocessing

    originals = sorted(FULLRES.rglob("*.jpeg"))
    files = []
    for copy in range(8):  # 320 files: several batches per worker
        for f in originals:
            link = tmp_path / f"{copy}_{f.name}"
            link.symlink_to(f)
            files.append(link)
    killed, rows = [], []
    try:
        for found, skipped in ray_batches(trained_run, files, run_preprocessing(trained_run), workers=2):
            assert not skipped
            rows += found
            if not killed:  # the first batch is back: the other batches are being decoded and scored
                workers = _scoring_workers()
                assert workers, "no scoring actor found"
                os.kill(workers[0].pid, signal.SIGKILL)
                killed.append(workers[0].pid)
    finally:
        ray.shutdown()
    assert killed and [r["path"] for r in rows] == [str(f) for f in files]
    by_name = {}
    for row in rows:  # each copy of an image scores the same, whichever worker and batch scored it
        by_name.setdefault(row["path"].split("_", 1)[1], []).append(row["probability"])
    assert all(max(probs) - min(probs) <= 1e-5 for probs in by_name.values())
