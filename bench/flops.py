"""How close each step of `make demo` runs to the machine's limit: its floating-point work, its achieved rate and
the measured peak of this CPU (the faster of a matrix product and a convolution).

FLOPs are counted from the Keras models (2 per multiply-add of every convolution, depthwise convolution and
dense layer; normalisation and activations left out, so the counts are lower bounds), and multiplied by what
each step runs:

- `train RUN`: forward and backward (3 x forward) per training image per epoch, validation's three views
  (unchanged and two framings) once per epoch, and one forward pass over training and validation for the
  guards; a frozen base's features once per image instead of every epoch, which the guards then reuse;
- `ensemble RUN`: its members forward over training (guards), validation and test;
- `stress RUNS`: each run forward over both sides (or the sampled images), once per condition, an ensemble's
  member at the ensemble's size only once where its run is stressed in the same step;
- `evidence RUN`: forward and backward over validation; `site-check RUN`: forward over validation, the test
  side and 400 validation X-rays under each of seven families.
"""

import time
from pathlib import Path

import numpy as np

VIEWS = 3  # validation views per epoch: unchanged and two framings
FAMILIES, FAMILY_IMAGES = 7, 400  # the site check's validation conditions


def forward_flops(model) -> float:
    """FLOPs of one image through `model` (nested models included)."""
    import keras

    total = 0.0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.Model) or not getattr(layer, "built", False):
            continue
        try:
            out = layer.output.shape
        except (AttributeError, ValueError):
            continue
        name = type(layer).__name__
        if name == "Conv2D":
            k = layer.kernel.shape  # (kh, kw, cin / groups, cout)
            total += 2 * out[1] * out[2] * k[0] * k[1] * k[2] * k[3]
        elif name == "DepthwiseConv2D":
            k = layer.kernel.shape  # (kh, kw, cin, multiplier)
            total += 2 * out[1] * out[2] * k[0] * k[1] * k[2] * k[3]
        elif name == "Dense":
            total += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
    return float(total)


def _run_forward(run: Path) -> float:
    return sum(flops for _, flops in _forward_parts(run))


def _forward_parts(run: Path) -> list[tuple[tuple, float]]:
    """(what the part computes on, its FLOPs per image) of a run's model, or of each member of an ensemble. A
    member at the ensemble's size, without test-time views, computes on the ensemble's own input: the input its
    run does alone (`cxr stress` scores it once for both)."""
    from cxr.runs.folder import load_run

    model, info = load_run(run)
    if not info.is_ensemble:
        return [((Path(run).resolve(), "own input"), forward_flops(model))]
    return [(part if m.size == info.size and not info.tta else ((run, i), "ensemble input"), flops)
            for i, m in enumerate(info.members) for part, flops in _forward_parts(m.run)]


def _images(run: Path) -> dict:
    from cxr.runs.record import TrainingRecord

    return TrainingRecord.read(run).images


def step_flops(step: str, runs: Path) -> float | None:
    """FLOPs of one demo step by its name ('train cnn', 'stress cnn vgg16', ...); None where no model runs."""
    words = step.split()
    command, names = words[0], words[1:]
    if command == "train":
        run = runs / names[0]
        from cxr.runs.record import TrainingRecord

        record = TrainingRecord.read(run)
        n, forward = record.images, _run_forward(run)
        if record.feature_seconds:  # a frozen base: features once (the guards reuse them), the head is negligible
            return forward * (n["train"] + n["val"] * VIEWS)
        return forward * (record.epochs_run * (3 * n["train"] + VIEWS * n["val"]) + n["train"] + n["val"])
    if command == "ensemble":
        n = _images(runs / names[0])
        return _run_forward(runs / names[0]) * (n["train"] + 2 * n["val"] + n["test"])
    if command == "stress":
        from cxr.runs.results import Stress

        total, scored = 0.0, set()
        for name in names:
            stressed = Stress.read_side(runs / name)
            conditions = 1 + len(stressed.perturbations)
            for part, flops in _forward_parts(runs / name):
                if part not in scored:  # an ensemble's member scored alone in the same step is not run again
                    scored.add(part)
                    total += flops * conditions * 2 * stressed.images
        return total
    if command == "evidence":
        return 3 * _run_forward(runs / names[0]) * _images(runs / names[0])["val"]
    if command == "site-check":
        n = _images(runs / names[0])
        return _run_forward(runs / names[0]) * (n["val"] + n["test"] + FAMILIES * FAMILY_IMAGES)
    return None


def measured_peak(dtype: str = "float32", repeats: int = 5) -> float:
    """The best GFLOP/s of this CPU in TensorFlow: the faster of a 2048 x 2048 matrix product and a 3 x 3
    convolution of 256 channels over 32 x 32 maps (batch 32). With AMX, oneDNN's bfloat16 convolutions run well
    beyond TensorFlow's bfloat16 matrix product (the seed's stress, VGG16's convolutions, measured 1.5x the
    product's rate), so the product alone is not the limit a convolutional step is held to."""
    import tensorflow as tf

    def best(fn, x) -> float:
        fn(x).numpy()
        seconds = np.inf
        for _ in range(repeats):
            start = time.perf_counter()
            fn(x).numpy()
            seconds = min(seconds, time.perf_counter() - start)
        return seconds

    size, maps, channels, batch = 2048, 32, 256, 32
    a = tf.cast(tf.random.normal((size, size)), dtype)
    matmul = 2 * size ** 3 / best(tf.function(lambda x: tf.linalg.matmul(x, x)), a)
    x = tf.cast(tf.random.normal((batch, maps, maps, channels)), dtype)
    kernel = tf.cast(tf.random.normal((3, 3, channels, channels)), dtype)
    convolve = tf.function(lambda x: tf.nn.conv2d(x, kernel, 1, "SAME"))
    conv = 2 * batch * maps * maps * 9 * channels ** 2 / best(convolve, x)
    return max(matmul, conv) / 1e9


def demo_limits(demo: dict, runs: Path, bfloat16: bool) -> dict:
    """Per step: FLOPs, achieved GFLOP/s, and that as a share of the float32 (and bfloat16) measured peak."""
    peaks = {"float32": measured_peak("float32")}
    if bfloat16:
        peaks["bfloat16"] = measured_peak("bfloat16")
    steps = {}
    for step, seconds in demo["steps_s"].items():
        flops = step_flops(step, runs)
        if flops is None or not seconds:
            steps[step] = {"flops": None}
            continue
        rate = flops / seconds / 1e9
        steps[step] = {"flops": flops, "gflop_per_s": round(rate, 2),
                       **{f"share_of_{k}_peak": round(rate / v, 4) for k, v in peaks.items()}}
    return {"peak_gflop_per_s": {k: round(v, 1) for k, v in peaks.items()}, "steps": steps}
