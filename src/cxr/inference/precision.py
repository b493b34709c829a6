"""Which floating-point policy to compute in: mixed bfloat16 where this CPU runs it measurably faster.

Having bfloat16 instructions is not enough: with AMX (Intel Sapphire Rapids and later) mixed bfloat16
trains the CNN 2x and runs VGG16 3x faster than float32, but through oneDNN's AVX-512 BF16 kernels alone
(AMX disabled with ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16) it is 2x slower than float32 for both. So `auto`
times a few training steps of a small convolutional network in each policy, once per CPU, oneDNN ISA cap and
TensorFlow version (cached), and picks bfloat16 only where it is clearly faster.
"""

import json
import logging
import os
import time
from pathlib import Path

from cxr.errors import UsageError
from cxr.files import write_atomically

log = logging.getLogger(__name__)

POLICIES = ("float32", "mixed_bfloat16")


FLAGS_THAT_MATTER = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")  # fastest first: what bfloat16 and VGG16 run on


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_bf16() -> bool:
    flags = _cpuinfo()
    return "avx512_bf16" in flags or "amx_bf16" in flags


BF16_MUST_BE = 1.2  # times faster than float32 to be chosen: float32 is exact and the same on every CPU


def _step_seconds(policy: str, steps: int = 6) -> float:
    """Median seconds of one training step (batch 32, 64 px) of a small CNN under `policy`."""
    import keras
    import numpy as np

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = keras.Sequential([
            keras.Input((64, 64, 1)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(128, 3, padding="same", activation="relu"), keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(1, activation="sigmoid", dtype="float32")])
        model.compile(optimizer="adam", loss="binary_crossentropy")
        x = np.random.default_rng(0).random((32, 64, 64, 1), np.float32)
        y = np.ones((32, 1), np.float32)
        model.train_on_batch(x, y)  # the first step builds the graph
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times.append(time.perf_counter() - start)
        return float(np.median(times))
    finally:
        keras.mixed_precision.set_global_policy(previous)


def measured_policy() -> str:
    """The faster policy on this machine, measured once (about 2 s) and cached under the cxr cache.

    Once chosen it stays chosen, in this process and in every process that shares the cache: where bfloat16
    is only somewhat faster (AVX-512 BF16 without AMX), a measurement taken under load can come out either way,
    and two Predictors of one run that computed in different precisions would disagree by about 1e-3."""
    from cxr.data.cache import cache_root

    key, path = machine_key(), cache_root() / "precision.json"
    if (path, key) not in _CHOSEN:
        known = _read_known(path)
        if key not in known:
            f32, bf16 = _step_seconds("float32"), _step_seconds("mixed_bfloat16")
            measured = {"policy": "mixed_bfloat16" if f32 / bf16 >= BF16_MUST_BE else "float32",
                        "float32_step_s": f32, "mixed_bfloat16_step_s": bf16}
            log.info("precision: float32 %.1f ms/step, mixed bfloat16 %.1f ms/step here: %s", f32 * 1e3,
                     bf16 * 1e3, measured["policy"])
            known = _read_known(path)  # another process may have chosen while this one measured: its choice stands
            if key not in known:
                known[key] = measured
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(path, json.dumps(known, indent=2).encode())
        _CHOSEN[(path, key)] = known[key]["policy"]
    return _CHOSEN[(path, key)]


_CHOSEN: dict = {}  # (cache file, machine key) -> policy, for the life of the process


def machine_key() -> str:
    """What the choice depends on: the CPU, its instruction sets, an ISA cap and TensorFlow's version."""
    import tensorflow as tf

    facts = cpu_facts()
    return (f"{facts['model']}|{sorted(k for k, v in facts['flags'].items() if v)}|"
            f"{facts['onednn_max_cpu_isa']}|{tf.__version__}")


def _read_known(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def cpu_facts() -> dict:
    """The CPU as benchmarks must record it: two machines with one name can differ 2x (AMX or not)."""
    info = _cpuinfo()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    return {"model": model, "cores": os.cpu_count(), "flags": {f: f in flags for f in FLAGS_THAT_MATTER},
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA")}


def resolve_precision(precision: str) -> str:
    """auto: mixed bfloat16 where the CPU has bfloat16 instructions and runs them measurably faster, else float32."""
    if precision == "auto":
        return measured_policy() if cpu_has_bf16() else "float32"
    if precision not in POLICIES:
        raise UsageError(f"--precision must be auto, float32 or mixed_bfloat16, not {precision!r}")
    return precision
