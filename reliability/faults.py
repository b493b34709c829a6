"""Faults: training killed with SIGKILL and resumed; cache files truncated or overwritten; two processes
filling one cache at once."""

import csv
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import ROOT, TRACEBACK, cxr, env_with

from cxr.data.cache import KEYS_SUFFIX, set_of

DAMAGED = "damaged cache file"


def _probabilities(run: Path) -> dict[str, float]:
    with open(run / "predictions.csv", newline="") as f:
        return {row["file"]: float(row["probability"]) for row in csv.DictReader(f)}


def _max_diff(a: Path, b: Path) -> float:
    pa, pb = _probabilities(a), _probabilities(b)
    assert pa.keys() == pb.keys(), "the runs scored different test images"
    return max(abs(pa[k] - pb[k]) for k in pa)


def _train_args(model: str, data: Path, out: Path) -> list:
    return ["train", "--model", model, "--data", data, "--out", out, "--size", 64, "--epochs", 4,
            "--patience", 20, "--split", "pooled", "--seed", 5]


def kill_resume(data: Path, work: Path, cache: Path) -> dict:
    """Kill at three points, resume each, and compare with uninterrupted runs of the same seed.

    Two uninterrupted runs of the same seed give the noise floor of this machine's arithmetic; a resumed
    run should match the uninterrupted one as closely as a rerun does (batch order, dropout and augmentation
    draws are set by seed and epoch), within 1e-3.
    """
    results = {}
    points = {"mid_epoch": "cnn", "checkpoint": "cnn", "features": "vgg16"}
    references = {}
    for model in sorted(set(points.values())):
        env = env_with(CXR_CACHE=cache / f"reference-{model}")
        runs = [work / f"{model}-uninterrupted-{i}" for i in (1, 2)]
        for run in runs:
            done = cxr(*_train_args(model, data, run), env=env)
            assert done.returncode == 0, done.stderr[-3000:]
        references[model] = (runs[0], _max_diff(*runs))
    for point, model in points.items():
        env = env_with(CXR_CACHE=cache / f"killed-{point}")  # cold cache: the features point must compute
        run = work / f"{model}-killed-{point}"
        killed = subprocess.run([sys.executable, str(ROOT / "reliability" / "killed_train.py"), point, "--", "-q",
                                 *map(str, _train_args(model, data, run))], env=env, capture_output=True)
        resumed = cxr("train", "--resume", run, env=env)
        reference, floor = references[model]
        ok = resumed.returncode == 0 and TRACEBACK not in resumed.stderr
        diff = _max_diff(reference, run) if ok else None
        results[point] = {"model": model, "killed_exit": killed.returncode, "resumed_exit": resumed.returncode,
                          "max_prob_diff": diff, "rerun_noise_floor": floor,
                          "stderr_tail": "" if ok else resumed.stderr[-1500:]}
    diffs = [r["max_prob_diff"] for r in results.values() if r["max_prob_diff"] is not None]
    resumed_count = sum(r["resumed_exit"] == 0 for r in results.values())
    return {
        "kills": sum(r["killed_exit"] == -9 for r in results.values()),
        "resumed": resumed_count,
        "max_prob_diff": max(diffs) if diffs else None,
        "rerun_noise_floor": max(floor for _, floor in references.values()),
        "points": results,
        "passed": resumed_count == len(points) and all(r["killed_exit"] == -9 for r in results.values())
        and max(diffs) <= max(floor for _, floor in references.values()) + 1e-3,
    }


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _overwrite(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle: middle + 64] = bytes(64)
    path.write_bytes(bytes(data))


def cache_corruption(run: Path, data: Path, work: Path, cache: Path) -> dict:
    """Damage each kind of cache file, use it again, and check it is reported, rebuilt and gives the same result."""
    env = env_with(CXR_CACHE=cache)
    first = cxr("evaluate", run, "--data", data, "--out", work / "clean.json", env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    # One set of decoded images and the content keys of its rows (cxr.data.cache): damage both.
    keys = sorted((cache / "images").rglob(f"sets/*{KEYS_SUFFIX}"))[0]
    images = set_of(keys)
    damaged = [(images, _truncate), (keys, _overwrite)]
    for path, damage in damaged:
        damage(path)
    again = cxr("evaluate", run, "--data", data, "--out", work / "again.json", env=env)
    same = (work / "clean.csv").read_text() == (work / "again.csv").read_text()  # every probability
    reported = [line for line in again.stderr.splitlines() if DAMAGED in line]
    decode = {"corrupted": len(damaged), "detected": sum(any(str(p) in line for line in reported) for p, _ in damaged),
              "same_metrics": same, "rebuilt": all(p.exists() for p, _ in damaged)}

    # Frozen-base features and the converted ImageNet weights, used again by a short vgg16 training.
    vgg_cache = cache / "vgg"
    vgg_env = env_with(CXR_CACHE=vgg_cache)
    args = ["train", "--model", "vgg16", "--data", data, "--size", 64, "--epochs", 1, "--split", "pooled"]
    done = cxr(*args, "--out", work / "vgg-1", env=vgg_env)
    assert done.returncode == 0, done.stderr[-3000:]
    features = sorted((vgg_cache / "features").glob("*.cxa"))
    weights = sorted((vgg_cache / "weights").glob("*.h5"))
    targets = [(features[0], _overwrite), (features[1], _truncate), (weights[0], _overwrite)]
    for path, damage in targets:
        damage(path)
    redone = cxr(*args, "--out", work / "vgg-2", env=vgg_env)
    reported = [line for line in redone.stderr.splitlines() if DAMAGED in line]
    heavy = {"corrupted": len(targets), "detected": sum(any(str(p) in line for line in reported) for p, _ in targets),
             "retrained": redone.returncode == 0, "rebuilt": all(p.exists() for p, _ in targets)}

    concurrent = _two_processes_one_cache(run, work, cache / "shared-by-two")
    corrupted = decode["corrupted"] + heavy["corrupted"]
    detected = decode["detected"] + heavy["detected"]
    return {
        "corrupted": corrupted, "detected": detected, "decode": decode, "features_and_weights": heavy,
        "concurrent_fill": concurrent,
        "passed": detected == corrupted and decode["same_metrics"] and decode["rebuilt"] and heavy["retrained"]
        and heavy["rebuilt"] and concurrent["passed"],
    }


def _two_processes_one_cache(run: Path, work: Path, cache: Path) -> dict:
    """Two `cxr evaluate` on the whole shared set, started together on one empty cache."""
    from common import CHEST_XRAY

    env = env_with(CXR_CACHE=cache)
    outs = [work / f"concurrent-{i}.json" for i in (1, 2)]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda out: cxr("evaluate", run, "--data", CHEST_XRAY, "--out", out, env=env), outs))
    ok = all(r.returncode == 0 and TRACEBACK not in r.stderr for r in results)
    entries = sorted(cache.rglob("*.cxa"))
    from cxr.files import load_array

    intact = sum(load_array(p) is not None for p in entries)
    same = ok and outs[0].with_suffix(".csv").read_text() == outs[1].with_suffix(".csv").read_text()
    shutil.rmtree(cache, ignore_errors=True)
    return {"processes": 2, "entries": len(entries), "intact": intact, "same_metrics": same,
            "passed": ok and same and intact == len(entries) and len(entries) > 0}
