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


def _shared_folder(tmp_path_factory, name: str) -> Path:
    """A folder every worker of this test session sees (beside the workers' own temporary folders)."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name


def _built_once(tmp_path_factory, name: str, build):
    """`build(folder)` run once for the whole session: the first worker to ask runs it, the others wait. The folder
    is then read-only for every test and worker: its files lose their write permission (which root ignores), and
    each worker checks at its end that no file in it was added, changed or removed."""
    from filelock import FileLock

    folder = _shared_folder(tmp_path_factory, name)
    done = folder.with_name(f"{name}.done")
    with FileLock(f"{folder}.lock"):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            build(folder)
            for path in folder.rglob("*"):
                if not path.is_symlink():
                    path.chmod(0o555 if path.is_dir() else 0o444)
            done.touch()
    before = _snapshot(folder)
    yield folder
    changed = sorted(set(before.items()) ^ set(_snapshot(folder).items()))
    assert not changed, f"a test wrote into the shared read-only {folder} (copy it with writable_copy): {changed}"


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (stat.st_size, stat.st_mtime_ns)
            for p in folder.rglob("*") if p.is_file() and not p.is_symlink() for stat in [p.stat()]}


def writable_copy(shared: Path, to: Path, **copytree_options) -> Path:
    """A copy of a shared read-only run (or folder of runs) that a test may write into."""
    shutil.copytree(shared, to, copy_function=shutil.copyfile, **copytree_options)
    for folder in (to, *(p for p in to.rglob("*") if p.is_dir() and not p.is_symlink())):
        folder.chmod(0o755)
    return to


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A small cnn run trained for real on a small real subset (64 px, 3 epochs), with non-default preprocessing
    so that every path downstream (evaluate, predict, serve, ONNX) has to honour the stored contract. Shared by
    every test and worker, read-only: a test that writes into a run copies it (writable_copy)."""
    if not (CHEST_XRAY / "train").is_dir():
        pytest.skip(f"real data not found at {CHEST_XRAY}")

    def train(folder: Path) -> None:
        data = real_subset_of(folder / "subset", per_class=60)
        result = run_cxr("train", "--model", "cnn", "--data", data, "--out", folder / "cnn", "--epochs", 3,
                         "--size", 64, "--split", "pooled", "--seed", 3, "--intensity", "exact", "--border", "frame")
        assert result.returncode == 0, result.stderr[-3000:]
        assert "test: n=" in result.stdout

    yield from (folder / "cnn" for folder in _built_once(tmp_path_factory, "trained", train))


@pytest.fixture(scope="session")
def demo_runs(tmp_path_factory) -> Path:
    """`make demo`'s own steps in miniature (one epoch, 48 px) on a small real subset, run once for the whole
    session and read-only (see trained_run). DEMO/runs holds its runs, DEMO/report its report, DEMO/output.txt
    what it printed."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    if not (CHEST_XRAY / "train").is_dir():
        pytest.skip(f"real data not found at {CHEST_XRAY}")

    def demo(folder: Path) -> None:
        data = real_subset_of(folder / "subset", per_class=60)
        result = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "demo-steps",
                                 f"CXR={sys.executable} -m cxr.cli", f"RUNS={folder / 'runs'}",
                                 f"REPORT={folder / 'report'}", "DEMO_FLAGS=--epochs 1 --size 48"],
                                capture_output=True, text=True, timeout=1500, env={**os.environ, "CXR_DATA": str(data)})
        (folder / "output.txt").write_text(result.stdout + result.stderr)
        (folder / "exit_code").write_text(str(result.returncode))

    for folder in _built_once(tmp_path_factory, "demo", demo):
        if (folder / "exit_code").read_text() != "0":
            pytest.fail("the miniature demo failed:\n" + (folder / "output.txt").read_text()[-4000:])
        yield folder
