"""Benchmarks against the peer (the seed's pipeline in idiomatic Keras), run back to back on this machine.

Not tests: nothing here asserts a time. Each figure is the median of --repeats runs, with min and max.
Writes bench/results.json and prints one table of ratios (cxr / peer).

    make bench                      # everything, including `make demo` wall time and peak memory
    .venv/bin/python bench/run.py --skip demo,load --repeats 3
"""

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peer import peer_runs
from scale import bench_cold_start, bench_ray_predict, bench_sweep_overhead
from table import format_table, ratios

from cxr.inference.precision import cpu_facts
from cxr.testing import CHEST_XRAY

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]


def stats(values) -> dict:
    values = list(values)
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def timed(fn, repeats: int) -> dict:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return stats(out)


def peer_summary(runs: list[dict]) -> dict:
    return {
        "train_images_per_s": stats(r["train_images_per_s"] for r in runs),
        "infer_images_per_s": stats(r["infer_images_per_s"] for r in runs),
        "load_decode_s": stats(r["load_decode_s"] for r in runs),
        "raw": runs,
    }


def load_train_images(train_dir: Path, cache_dir: Path | None = None):
    import numpy as np

    from cxr.data.cache import load_images
    from cxr.data.layout import discover
    from cxr.data.preprocess import Preprocessing

    records = [r for r in discover(train_dir.parent) if r.given_split == "train"]
    loaded = load_images([r.path for r in records], Preprocessing(128), cache_dir=cache_dir)
    label_of = {r.path: r.label for r in records}
    # uint8, as `cxr train` feeds them (the model casts each batch): 4x less memory traffic than float32.
    return loaded.images[..., None], np.array([label_of[p] for p in loaded.paths])


def bench_train(x, y, precision: str, repeats: int, epochs: int, model_name: str = "cnn") -> dict:
    import keras

    from cxr.models import build
    from cxr.training.fit import compile_model

    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    model = build(model_name, 128).model
    compile_model(model, 1e-3)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)  # warm-up epoch (graph tracing), as the peer does
    seconds = timed(lambda: model.fit(x, y, batch_size=32, epochs=epochs, verbose=0), repeats)
    keras.mixed_precision.set_global_policy("float32")
    per_s = [len(x) * epochs / s for s in seconds["runs"]]
    return {"train_images_per_s": stats(per_s), "epoch_s": stats(s / epochs for s in seconds["runs"])}


def bench_inference(run_dir: Path, x, repeats: int) -> dict:
    """Throughput on all train images and warm single-image latency, Keras and ONNX Runtime."""
    import numpy as np

    from cxr.inference.export import export_onnx
    from cxr.inference.predictor import Predictor

    if not (run_dir / "model.onnx").exists():
        export_onnx(run_dir)
    out = {}
    for name, engine, precision in (("keras float32", "keras", "float32"),
                                    ("keras bfloat16", "keras", "mixed_bfloat16"), ("onnx", "onnx", "float32")):
        predictor = Predictor(run_dir, engine=engine, precision=precision)
        predictor.predict(x[:256], batch_size=256)
        seconds = timed(lambda p=predictor: p.predict(x, batch_size=256, recompute=True), repeats)
        one = x[:1]
        for _ in range(10):
            predictor.predict(one)
        latencies = []
        for _ in range(200):
            start = time.perf_counter()
            predictor.predict(one, recompute=True)
            latencies.append((time.perf_counter() - start) * 1000)
        out[name] = {"infer_images_per_s": stats(len(x) / s for s in seconds["runs"]),
                       "single_image_ms": {"median": float(np.median(latencies)),
                                           "p95": float(np.percentile(latencies, 95))}}
    return out


def bench_decode(train_dir: Path, repeats: int) -> dict:
    from cxr.data.cache import load_images
    from cxr.data.layout import discover
    from cxr.data.preprocess import Preprocessing

    paths = [r.path for r in discover(train_dir.parent)]
    cold, warm = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            load_images(paths, Preprocessing(128), cache_dir=Path(cache))
            cold.append(time.perf_counter() - start)
            start = time.perf_counter()
            load_images(paths, Preprocessing(128), cache_dir=Path(cache))
            warm.append(time.perf_counter() - start)
    return {"images": len(paths), "cold_s": stats(cold), "warm_s": stats(warm)}


def bench_transfer(x, y, head_epochs: int, sample: int) -> dict:
    """VGG16 frozen base, head to convergence: cached features vs running the base every epoch.

    The every-epoch approach is timed for one epoch on `sample` images and scaled to the full set and to
    the number of epochs the head needed (a full run would take hours here).
    """
    import keras

    from cxr.inference.precision import resolve_precision
    from cxr.models import build
    from cxr.training.fit import compile_model

    precision = resolve_precision("auto")
    keras.mixed_precision.set_global_policy(precision)
    built = build("vgg16", 128)
    start = time.perf_counter()
    features = built.features.predict(x, batch_size=64, verbose=0)
    feature_s = time.perf_counter() - start
    compile_model(built.head, 1e-3)
    built.head.fit(features[:64], y[:64], epochs=1, verbose=0)
    start = time.perf_counter()
    built.head.fit(features, y, batch_size=32, epochs=head_epochs, verbose=0)
    head_s = time.perf_counter() - start
    cached_total = feature_s + head_s

    every = build("vgg16", 128).model
    compile_model(every, 1e-3)
    every.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0)
    start = time.perf_counter()
    every.fit(x[:sample], y[:sample], batch_size=32, epochs=1, verbose=0)
    epoch_s = (time.perf_counter() - start) * len(x) / sample
    keras.mixed_precision.set_global_policy("float32")
    return {"precision": precision, "images": len(x), "head_epochs": head_epochs,
            "cached": {"feature_s": feature_s, "head_s": head_s, "total_s": cached_total},
            "every_epoch": {"epoch_s_estimated": epoch_s, "total_s_estimated": epoch_s * head_epochs,
                            "timed_on_images": sample},
            "speedup": epoch_s * head_epochs / cached_total}


def _step_name(command: str) -> str:
    """'train cnn_aug', 'stress cnn vgg16', ...: a `cxr -q` command line as make or a `--then` chain echoes it,
    shortened."""
    command = re.sub(r"@(\S+)", lambda m: (ROOT / m.group(1)).read_text().strip(), command)  # the served run
    words = command.split(" -q ", 1)[1].split()
    if words[0] in ("train", "ensemble"):
        return f"{words[0]} {Path(words[words.index('--out') + 1]).name}"
    runs = [w for w, before in zip(words[1:], words) if "/" in w and before != "--out"]
    return " ".join([words[0], *(Path(w).name for w in runs)])


def bench_demo() -> dict:
    """`make demo` from a warm venv and an empty cxr cache: every image decoded, every feature computed,
    the ImageNet weights converted, as on a first run. Each step is timed from the moment make echoes its
    command line to the next one."""
    with tempfile.TemporaryDirectory(prefix="cxr-demo-cache-") as cache:
        start, starts = time.perf_counter(), []
        with subprocess.Popen(["make", "demo"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, env={**os.environ, "CXR_CACHE": cache}) as make:
            for line in make.stdout:
                if " -q " in line:
                    starts.append((_step_name(line), time.perf_counter() - start))
        wall = time.perf_counter() - start
        if make.returncode:
            raise subprocess.CalledProcessError(make.returncode, "make demo")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest single process
    ends = [at for _, at in starts[1:]] + [wall]
    return {"wall_s": wall, "peak_rss_mb": peak_kb / 2**10, "cache": "empty at the start",
            "steps_s": {name: round(end - at, 1) for (name, at), end in zip(starts, ends)}}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=CHEST_XRAY)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=2, help="timed training epochs per repeat")
    p.add_argument("--run", type=Path, default=ROOT / "runs" / "demo" / "cnn", help="trained run for inference")
    p.add_argument("--skip", default="",
                   help="comma list of: peer,train,infer,decode,transfer,demo,load,ray,cold,tta,sweep")
    args = p.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    train_dir = (args.data / "train").resolve()
    results = {"machine": {"cpu": platform.processor() or platform.machine(), **cpu_facts(),
                           "python": platform.python_version()}, "repeats": args.repeats}
    if "demo" not in skip:
        print("make demo ...", flush=True)
        results["demo"] = bench_demo()
        from flops import demo_limits

        from cxr.inference.precision import cpu_has_bf16

        non_training = sum(s for step, s in results["demo"]["steps_s"].items() if not step.startswith("train "))
        results["demo"]["share_not_training"] = round(non_training / results["demo"]["wall_s"], 3)
        results["demo"]["limits"] = demo_limits(results["demo"], ROOT / "runs" / "demo", cpu_has_bf16())
    # The peer's runs bracket cxr's training, inference and decoding measurements (half before, half after):
    # this VM slows under minutes of sustained load, and whichever side ran first would get the faster minutes.
    peer = {False: [], True: []}  # by bf16
    before = (args.repeats + 1) // 2

    def measure_peer(repeats):
        for bf16 in peer:
            print(f"peer{', mixed bfloat16' if bf16 else ''} ({repeats} of {args.repeats}) ...", flush=True)
            peer[bf16] += peer_runs(train_dir, repeats, args.epochs, bf16)

    if "peer" not in skip:
        measure_peer(before)
    x, y = load_train_images(train_dir)
    if "train" not in skip:
        for precision in ("float32", "mixed_bfloat16"):
            print(f"cxr training, {precision} ...", flush=True)
            results[f"train_{precision}"] = bench_train(x, y, precision, args.repeats, args.epochs)
        # The same network as the peer's, in the precision `cxr train` picks here (--precision auto: measured per
        # CPU; without AMX float32 is the faster one, where the peer's bfloat16 switch makes it slower).
        from cxr.inference.precision import resolve_precision

        auto = resolve_precision("auto")
        print(f"cxr training, the seed's exact layout (cnn_seed), {auto} ...", flush=True)
        results["train_seed_layout"] = {**bench_train(x, y, auto, args.repeats, args.epochs, "cnn_seed"),
                                        "precision": auto}
    if "infer" not in skip and (args.run / "model.keras").exists():
        print("inference ...", flush=True)
        results["inference"] = bench_inference(args.run, x, args.repeats)
    if "decode" not in skip:
        print("decoding ...", flush=True)
        results["decode"] = bench_decode(train_dir, args.repeats)
    if "peer" not in skip:
        measure_peer(args.repeats - before)
        results["peer"], results["peer_bf16"] = peer_summary(peer[False]), peer_summary(peer[True])
    if "transfer" not in skip:
        print("transfer learning ...", flush=True)
        results["transfer"] = bench_transfer(x, y, head_epochs=30, sample=512)
    if "load" not in skip and (args.run / "model.keras").exists():
        print("service load test ...", flush=True)
        from load import load_test

        results["load"] = load_test(args.run)
    if "ray" not in skip and (args.run / "model.keras").exists():
        print("Ray batch prediction, 1 and 2 workers ...", flush=True)
        results["ray_predict"] = bench_ray_predict(args.run, args.data)
    if "cold" not in skip and (args.run / "model.keras").exists():
        print("cold start, one file ...", flush=True)
        results["cold_start"] = bench_cold_start(args.run, next((args.data / "val" / "NORMAL").glob("*.jpeg")))
    if "tta" not in skip:
        print("time to accuracy, cxr and the peer ...", flush=True)
        from time_to_accuracy import measure

        results["time_to_accuracy"] = measure(args.data)
    if "sweep" not in skip:
        print("sweep overhead per trial ...", flush=True)
        results["sweep"] = bench_sweep_overhead(args.data)
    out = ROOT / "bench" / "results.json"
    if out.exists():  # sections skipped this time keep their last measurement, marked as such
        for key, value in json.loads(out.read_text()).items():
            if key not in results and isinstance(value, dict) and key != "ratios":
                results[key] = {**value, "carried_over_from_an_earlier_run": True}
    results["ratios"] = ratios(results)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(format_table(results))
    print(f"\nfull results: {out}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
