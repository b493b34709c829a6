"""Scale-out and start-up benchmarks: Ray batch prediction on 1 and 2 workers against the local path over
an archive of 20,000+ files (the shared images listed several times, as links); the cost of a Ray Tune sweep
per trial against a plain `cxr train` of the same configuration; one file from a cold start."""

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _timed_with_peak_rss(cmd: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds and the peak resident memory (MB) of the command's own process (the Ray driver)."""
    import psutil

    start = time.perf_counter()
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = [0]

    def watch():
        try:
            watched = psutil.Process(process.pid)
            while process.poll() is None:
                peak[0] = max(peak[0], watched.memory_info().rss)
                time.sleep(0.2)
        except psutil.NoSuchProcess:
            pass

    watcher = threading.Thread(target=watch)
    watcher.start()
    _, stderr = process.communicate()
    watcher.join()
    wall = time.perf_counter() - start
    return wall, peak[0] / 2**20, subprocess.CompletedProcess(cmd, process.returncode, None, stderr.decode())


def bench_ray_predict(run: Path, data: Path, files: int = 20_000) -> dict:
    originals = sorted(p for p in data.rglob("*.jpeg"))
    out = {"files": files, "run": str(run)}
    with tempfile.TemporaryDirectory(prefix="cxr-archive-") as tmp:
        archive = Path(tmp) / "archive"
        archive.mkdir()
        for i in range(files):
            source = originals[i % len(originals)]
            (archive / f"{i:06d}_{source.name}").symlink_to(source)
        cxr = [sys.executable, "-m", "cxr.cli", "-q", "predict", str(run), str(archive), "--out"]
        for name, extra in (("local", []), ("ray_1_worker", ["--ray", "--workers", "1"]),
                            ("ray_2_workers", ["--ray", "--workers", "2"])):
            csv = Path(tmp) / f"{name}.csv"
            wall, peak_mb, done = _timed_with_peak_rss([*cxr, str(csv), *extra])
            if done.returncode != 0:
                raise RuntimeError(f"{name} failed: {done.stderr[-2000:]}")
            rows = sum(1 for _ in open(csv)) - 1
            out[name] = {"wall_s": wall, "images_per_s": rows / wall, "driver_peak_rss_mb": peak_mb, "rows": rows}
    return out


def bench_sweep_overhead(data: Path) -> dict:
    """One trial through `cxr sweep` against the same `cxr train`: what Ray Tune adds per trial."""
    config = {"model": "cnn", "size": 64, "epochs": 3, "patience": 20, "split": "official", "seed": 1}
    with tempfile.TemporaryDirectory(prefix="cxr-sweep-") as tmp:
        args = [f"--{k.replace('_', '-')}={v}" for k, v in config.items()]
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cxr.cli", "-q", "train", "--data", str(data), "--out",
                        f"{tmp}/plain", *args], check=True, capture_output=True)
        plain = time.perf_counter() - start
        toml = Path(tmp) / "one.toml"
        lines = ["[train]", f'data = "{data}"'] + [f"{k} = {v!r}".replace("'", '"') for k, v in config.items()
                                                  if k != "seed"]
        toml.write_text("\n".join(lines + ["[grid]", "seed = [1]", "[sweep]", "cpus_per_trial = 2"]) + "\n")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cxr.cli", "-q", "sweep", str(toml), "--out", f"{tmp}/sweep"],
                       check=True, capture_output=True)
        swept = time.perf_counter() - start
    return {"plain_train_s": plain, "one_trial_sweep_s": swept, "overhead_per_trial_s": swept - plain,
            "config": config}


def bench_cold_start(run: Path, image: Path, repeats: int = 5) -> dict:
    """What a user waits for on one file: a fresh `cxr predict RUN ONE_FILE` process, start to exit."""
    from cxr.inference.export import export_onnx

    if not (run / "model.onnx").exists():
        export_onnx(run)
    out = {}
    for engine in ("onnx", "keras"):
        walls = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "cxr.cli", "-q", "predict", str(run), str(image), "--engine",
                            engine], check=True, capture_output=True)
            walls.append(time.perf_counter() - start)
        out[engine] = {"median_s": sorted(walls)[len(walls) // 2], "runs": walls}
    return out
