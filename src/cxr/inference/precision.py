"""Which floating-point policy to compute in: mixed bfloat16 where this CPU runs it measurably faster.

Having bfloat16 instructions is not enough: with AMX (Intel Sapphire Rapids and later) mixed bfloat16
trains the CNN 2x and runs VGG16 3x faster than float32, but through oneDNN's AVX-512 BF16 kernels alone
(AMX disabled with ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16) it is 2x slower than float32 for both. So `auto`
times a few training steps of a small convolutional network in each policy, once per CPU, oneDNN ISA cap and
TensorFlow version (cached), and picks bfloat16 only where it is clearly faster.

Depthwise convolutions (MobileNetV2, Xception) are timed apart: on a Zen 4 (AVX-512 BF16, no AMX) mixed
bfloat16 trains the small CNN 4x faster than float32 and MobileNetV2 1.5x slower.
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


def _probe(kind: str):
    """A small network of the kind of convolution a model is built from, for 64 px inputs."""
    import keras
    from keras import layers

    x = image = keras.Input((64, 64, 1))
    if kind == "depthwise":  # MobileNetV2's inverted residual blocks: expand, depthwise, project
        x = layers.Conv2D(32, 3, strides=2, padding="same")(x)
        for channels, stride in ((32, 1), (64, 2), (64, 1)):
            x = layers.ReLU(6.0)(layers.BatchNormalization()(layers.Conv2D(channels * 4, 1)(x)))
            x = layers.DepthwiseConv2D(3, strides=stride, padding="same")(x)
            x = layers.Conv2D(channels, 1)(layers.ReLU(6.0)(layers.BatchNormalization()(x)))
    else:
        for channels in (32, 64):
            x = layers.MaxPooling2D()(layers.Conv2D(channels, 3, padding="same", activation="relu")(x))
        x = layers.Conv2D(128, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(image, layers.Dense(1, activation="sigmoid", dtype="float32")(x))


def _step_seconds(policy: str, kind: str = "standard", steps: int = 6) -> float:
    """Median seconds of one training step (batch 32, 64 px) of the `kind` probe under `policy`."""
    import keras
    import numpy as np

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = _probe(kind)
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


def measured_policy(kind: str = "standard") -> str:
    """The faster policy on this machine for `kind` of convolution (standard or depthwise), measured once
    (2-8 s) and cached under the cxr cache.

    Once chosen it stays chosen, in this process and in every process that shares the cache: where bfloat16
    is only somewhat faster (AVX-512 BF16 without AMX), a measurement taken under load can come out either way,
    and two Predictors of one run that computed in different precisions would disagree by about 1e-3."""
    from cxr.data.cache import cache_root

    key, path = machine_key() + ("" if kind == "standard" else f"|{kind}"), cache_root() / "precision.json"
    if (path, key) not in _CHOSEN:
        known = _read_known(path)
        if key not in known:
            f32, bf16 = _step_seconds("float32", kind), _step_seconds("mixed_bfloat16", kind)
            measured = {"policy": "mixed_bfloat16" if f32 / bf16 >= BF16_MUST_BE else "float32",
                        "float32_step_s": f32, "mixed_bfloat16_step_s": bf16}
            log.info("precision (%s convolutions): float32 %.1f ms/step, mixed bfloat16 %.1f ms/step here: %s",
                     kind, f32 * 1e3, bf16 * 1e3, measured["policy"])
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


DEPTHWISE_MODELS = ("mobilenetv2", "xception")  # built of depthwise convolutions: the names they go by start so


def convolution_kind(model: str | None) -> str:
    """Which probe speaks for the architecture `model` (a registry name)."""
    return "depthwise" if model and model.startswith(DEPTHWISE_MODELS) else "standard"


def resolve_precision(precision: str, model: str | None = None) -> str:
    """auto: mixed bfloat16 where the CPU has bfloat16 instructions and runs the convolutions of `model` (a
    registry name) measurably faster in it, else float32."""
    if precision == "auto":
        return measured_policy(convolution_kind(model)) if cpu_has_bf16() else "float32"
    if precision not in POLICIES:
        raise UsageError(f"--precision must be auto, float32 or mixed_bfloat16, not {precision!r}")
    return precision
