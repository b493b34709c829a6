import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cxr.testing import CHEST_XRAY, FULLRES, ROOT, real_subset_of, run_cxr  # noqa: F401  (tests import them here)

# The longest tests first: with two workers, a long test started last leaves the other worker idle.
LONGEST_FIRST = ("test_demo.py", "test_round_trip.py", "test_robust_fine_tuning.py", "test_pipeline.py",
                 "test_devices.py", "test_sweep.py", "test_errors.py", "test_ray.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the order within a file stays


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Decoded images and converted weights go to a cache shared by the test session, never ~/.cache."""
    root = os.environ.get("CXR_CACHE") or str(tmp_path_factory.getbasetemp().parent / "cxr-cache")
    monkeypatch.setenv("CXR_CACHE", root)


def needs_real_data():
    return pytest.mark.skipif(not (CHEST_XRAY / "train").is_dir(), reason=f"real data not found at {CHEST_XRAY}")


@pytest.fixture(scope="session")
def real_subset(tmp_path_factory) -> Path:
    """A small Kaggle-layout folder of real X-rays (links into the shared data): 60 per class, no test/."""
    if not (CHEST_XRAY / "train").is_dir():
        pytest.skip(f"real data not found at {CHEST_XRAY}")
    return real_subset_of(tmp_path_factory.mktemp("subset"), per_class=60)


def write_image(path: Path, array=None, mode="L", size=(64, 48), fmt=None, **save_kwargs) -> Path:
    """A synthetic image file: a gradient with a bright blob, in any Pillow mode."""
    from PIL import Image

    if array is None:
        h, w = size[1], size[0]
        yy, xx = np.mgrid[0:h, 0:w]
        array = ((xx / w) * 200 + 30 * (((xx - w / 3) ** 2 + (yy - h / 2) ** 2) < (h / 5) ** 2)).astype(np.uint8)
    img = Image.fromarray(array)
    if mode != img.mode:
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt, **save_kwargs)
    return path


def make_layout(root: Path, splits=("train", "val"), per_class=6, patients_per_class=3) -> Path:
    """Kaggle layout with Kermany-style names: several images per patient."""
    for split_index, split in enumerate(splits):
        for cls in ("NORMAL", "PNEUMONIA"):
            for i in range(per_class):
                patient = split_index * 100 + i % patients_per_class
                name = (f"IM-{patient:04d}-{i:04d}.jpeg" if cls == "NORMAL"
                        else f"person{patient}_bacteria_{i}.jpeg")
                write_image(root / split / cls / name)
    return root


@pytest.fixture(scope="session")
def trained_run(real_subset, tmp_path_factory) -> Path:
    """A small cnn run trained for real on the real subset (64 px, 3 epochs), with non-default preprocessing
    so that every path downstream (evaluate, predict, serve, ONNX) has to honour the stored contract."""
    run = tmp_path_factory.mktemp("runs") / "cnn"
    result = run_cxr("train", "--model", "cnn", "--data", real_subset, "--out", run, "--epochs", 3, "--size", 64,
                     "--split", "pooled", "--seed", 3, "--intensity", "exact", "--border", "frame")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test: n=" in result.stdout
    return run


def _shared_folder(tmp_path_factory, name: str) -> Path:
    """A folder every worker of this test session sees (beside the workers' own temporary folders)."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name


@pytest.fixture(scope="session")
def demo_runs(tmp_path_factory) -> Path:
    """`make demo`'s own steps in miniature (one epoch, 48 px) on a small real subset, run once for the whole
    session: the first worker to ask runs it, the others wait. DEMO/runs holds its runs, DEMO/report its
    report, DEMO/output.txt what it printed. Read-only: a test that writes copies what it needs."""
    from filelock import FileLock

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    if not (CHEST_XRAY / "train").is_dir():
        pytest.skip(f"real data not found at {CHEST_XRAY}")
    demo = _shared_folder(tmp_path_factory, "demo")
    with FileLock(f"{demo}.lock"):
        if not (demo / "exit_code").exists():
            shutil.rmtree(demo, ignore_errors=True)
            data = real_subset_of(demo / "subset", per_class=60)
            runs, report = demo / "runs", demo / "report"
            result = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "demo-steps",
                                     f"CXR={sys.executable} -m cxr.cli", f"RUNS={runs}", f"REPORT={report}",
                                     "DEMO_FLAGS=--epochs 1 --size 48"],
                                    capture_output=True, text=True, timeout=1500,
                                    env={**os.environ, "CXR_DATA": str(data)})
            (demo / "output.txt").write_text(result.stdout + result.stderr)
            (demo / "exit_code").write_text(str(result.returncode))
    if (demo / "exit_code").read_text() != "0":
        pytest.fail("the miniature demo failed:\n" + (demo / "output.txt").read_text()[-4000:])
    return demo
