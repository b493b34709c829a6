"""Training: Keras fit with early stopping on validation loss, the best checkpoint kept, resume after a kill,
and the decision threshold chosen on validation through the same Predictor that serves the model."""

import dataclasses
import logging
import math
import shutil
import time
from pathlib import Path

import keras
import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from cxr import CLASSES, __version__
from cxr.data.cache import load_images
from cxr.data.dataset import Prepared, prepare
from cxr.data.framing import FINE, framed_validation, framing_augmentation
from cxr.errors import UsageError
from cxr.evaluation.metrics import (
    FRAMED_THRESHOLD_RULE,
    THRESHOLD_RULE,
    calibration,
    choose_threshold,
    choose_threshold_worst_framing,
)
from cxr.inference.ood import fit_for_run
from cxr.inference.precision import resolve_precision
from cxr.inference.predictor import Predictor
from cxr.inference.temperature import apply_temperature, fit_temperature
from cxr.models import Built, build, copy_in_precision, model_flops
from cxr.runs.folder import INFO_FILE, MODEL_FILE, RunError, load_keras_model, read_history, read_json, write_json
from cxr.runs.settings import TrainConfig
from cxr.training.callbacks import EpochSeeds, EpochTimer, ResumableEarlyStopping, SaveForResume, truncate_history
from cxr.training.devices import distribution
from cxr.training.features import cached_features

log = logging.getLogger(__name__)
POOLED = ", pooled with its copies cropped 10% and 20% from every side"
MIN_DELTA = 1e-3  # smallest drop of validation loss that counts as an improvement for early stopping


def compile_model(model: keras.Model, learning_rate: float, label_smoothing: float = 0.0) -> None:
    loss = keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)
    model.compile(keras.optimizers.Adam(learning_rate), loss, metrics=["accuracy", keras.metrics.AUC(name="auc")])


def _fit(run_dir: Path, target: keras.Model, x, y, xv, yv, cfg: TrainConfig, stage: str, epochs: int,
         learning_rate: float, state: dict | None, extra_callbacks: list, x_fine=None) -> None:
    """Fit `target` (or, when resuming this stage, the saved copy with its optimizer) and keep the best;
    `x_fine`: the training images at framing.FINE times the size, for the framing augmentation's crops."""
    checkpoints = run_dir / "checkpoints"
    checkpoints.mkdir(exist_ok=True)
    resuming = state is not None and state["stage"] == stage
    if resuming:
        model = load_keras_model(checkpoints / "last.keras", compile=True)  # weights + optimizer
        truncate_history(run_dir / "history.csv", state["history_rows"])
    else:
        model = target
        compile_model(model, learning_rate, cfg.label_smoothing)
    initial_epoch = state["epoch"] + 1 if resuming else 0
    # An epoch counts as better only when validation loss drops by MIN_DELTA: once the decaying learning
    # rate has settled the model, ever smaller gains would otherwise restart the patience count again and again.
    talk = log.isEnabledFor(logging.INFO)  # `cxr -q`: no per-epoch lines
    early = ResumableEarlyStopping(state if resuming else None, monitor="val_loss", patience=cfg.patience,
                                   min_delta=MIN_DELTA, restore_best_weights=True, verbose=int(talk))
    best_path = checkpoints / f"{stage}_best.keras"
    best = keras.callbacks.ModelCheckpoint(
        best_path, monitor="val_loss", save_best_only=True,
        initial_value_threshold=state.get("best_saved", state["best"]) if resuming else None)
    callbacks = [
        EpochTimer(),
        EpochSeeds(cfg.seed),
        # A function of the epoch alone (unlike ReduceLROnPlateau), so a resumed run follows the same schedule.
        keras.callbacks.LearningRateScheduler(lambda epoch: learning_rate * cfg.lr_decay ** epoch),
        best,
        early,
        keras.callbacks.CSVLogger(run_dir / "history.csv", append=resuming or stage != "fit"),
        SaveForResume(checkpoints, early, best, stage),
        *extra_callbacks,
    ]
    if initial_epoch < epochs:
        batches = training_batches(x, y, cfg, initial_epoch, epochs, x_fine)
        model.fit(batches, validation_data=(xv, yv), epochs=epochs, initial_epoch=initial_epoch,
                  steps_per_epoch=math.ceil(len(y) / cfg.batch_size), callbacks=callbacks, verbose=2 if talk else 0,
                  shuffle=False)  # the batches are shuffled already, as a function of (seed, epoch)
    target.set_weights(load_keras_model(best_path).get_weights())


def training_batches(x, y, cfg: TrainConfig, first_epoch: int, epochs: int, x_fine=None):
    """Shuffled batches whose order is a function of (seed, epoch) alone, for epochs first_epoch..epochs-1.

    A run resumed at epoch k then sees exactly the batches the killed run would have seen, so it ends with
    the same model. With balanced class weights, each example carries its class's weight.
    """
    import tensorflow as tf

    n, framing = len(y), cfg.framing == "targeted"
    weights = np.ones(n, np.float32)
    if cfg.class_weight == "balanced":
        weights = compute_class_weight("balanced", classes=np.array([0, 1]), y=y).astype(np.float32)[y]
    x, y, weights = tf.constant(x), tf.constant(y), tf.constant(weights)
    fine = None if x_fine is None else tf.constant(x_fine)

    def epoch_order(epoch):
        return tf.random.experimental.stateless_shuffle(tf.range(n), seed=tf.stack([cfg.seed, epoch]))

    def epoch_batches(epoch):  # batched per epoch: the last may be short
        epoch = tf.cast(epoch, tf.int32)
        numbered = tf.data.Dataset.from_tensor_slices(epoch_order(epoch)).batch(cfg.batch_size).enumerate()
        return numbered.map(lambda i, idx: (epoch * 100_003 + tf.cast(i, tf.int32), idx))

    def gather(batch_id, idx):
        images, labels = tf.gather(x, idx), tf.gather(y, idx)
        if framing:  # a draw fixed by (seed, epoch, batch): resuming repeats it exactly
            images = framing_augmentation(images, labels, tf.stack([cfg.seed, batch_id]), cfg.preprocessing,
                                          None if fine is None else tf.gather(fine, idx))
        return images, labels, tf.gather(weights, idx)

    batches = tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_batches)
    # Fixed parallelism, no autotuning: a gather from memory needs no tuning, and after a few minutes the
    # autotuner's thread sleeps up to a minute between rounds, which the end of `fit` waited for (30-60 s).
    options = tf.data.Options()
    options.autotune.enabled = False
    return batches.map(gather, num_parallel_calls=2).prefetch(2).with_options(options)


def fine_training_images(train_part, cfg: TrainConfig) -> np.ndarray | None:
    """The training images at framing.FINE times the size, for sharp framing crops (None without framing)."""
    if cfg.framing == "none":
        return None
    loaded = load_images(train_part.paths, cfg.preprocessing.at_size(FINE * cfg.size))
    if loaded.paths != [Path(p) for p in train_part.paths]:
        raise RunError("the training images could not all be read again at the larger size for framing crops")
    return loaded.images[..., None]


def _unfreeze_last_convs(built: Built, n: int) -> None:
    base = next(layer for layer in built.features.layers if isinstance(layer, keras.Model))
    base.trainable = True
    convs = [layer for layer in base.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.SeparableConv2D))]
    for layer in base.layers:
        layer.trainable = layer in convs[-n:]


def train(cfg: TrainConfig, resume: bool = False, callbacks: list | None = None) -> Path:
    """Train, calibrate and save a run; `callbacks` (Keras) also see every epoch, e.g. a sweep's reporter."""
    run_dir = Path(cfg.out)
    state = None
    if resume:
        state_file = run_dir / "checkpoints" / "state.json"
        if state_file.exists():
            state = read_json(state_file)
        else:
            log.warning("%s stopped before its first epoch ended; training it from the start", run_dir)
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise RunError(f"{run_dir} already holds a run; choose another --out, or continue it with --resume {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.precision = resolve_precision(cfg.precision)
    if not resume:
        write_json(run_dir / "config.json", {**dataclasses.asdict(cfg), "cxr_version": __version__})
    scope, replicas = distribution(cfg.devices)  # before anything starts TensorFlow's runtime
    keras.utils.set_random_seed(cfg.seed)
    keras.mixed_precision.set_global_policy(cfg.precision)

    started = time.perf_counter()
    data: Prepared = prepare(Path(cfg.data), cfg.split, cfg.split_seed, cfg.preprocessing, cfg.fractions, run_dir)
    load_seconds = time.perf_counter() - started
    train_part, val_part = data.parts["train"], data.parts["val"]
    log.info("split: %s", data.split.note)
    unchanged_val = val_part
    if cfg.framed_validation:  # every choice below (early stopping, temperature, threshold) sees tight framings
        val_part = framed_validation(val_part, cfg.preprocessing)

    with scope:  # several devices: the model's variables are mirrored on each
        built = build(cfg.model, cfg.size, weights=cfg.weights)
        feature_started = time.perf_counter()
        if cfg.framing != "none" and built.frozen_base:
            raise UsageError(f"--framing {cfg.framing} changes the images each epoch; {cfg.model} trains on "
                             "features computed once from a frozen base")
        if built.frozen_base:  # the frozen base gives the same features every epoch: compute them once
            x, xv = (cached_features(built, part.images, cfg) for part in (train_part, val_part))
            first = built.head
        else:
            x, xv = train_part.images, val_part.images  # uint8: the model casts each batch (4x less memory)
            first = built.model
        feature_seconds = time.perf_counter() - feature_started

        if state is None or state["stage"] == "fit":
            _fit(run_dir, first, x, train_part.labels, xv, val_part.labels, cfg, "fit", cfg.epochs,
                 cfg.learning_rate, state, callbacks or [], fine_training_images(train_part, cfg))
        elif built.frozen_base:
            first.set_weights(load_keras_model(run_dir / "checkpoints" / "fit_best.keras").get_weights())
        if cfg.fine_tune and built.frozen_base:
            _unfreeze_last_convs(built, cfg.fine_tune)
            _fit(run_dir, built.model, train_part.images, train_part.labels,
                 val_part.images, val_part.labels, cfg, "fine_tune", cfg.fine_tune_epochs,
                 cfg.learning_rate / 100, state, callbacks or [])

    final = built.model
    if cfg.precision != "float32":  # saved in float32: it predicts and exports the same on any CPU
        final = copy_in_precision(cfg.model, cfg.size, built.model, "float32")
    keras.mixed_precision.set_global_policy("float32")
    final.save(run_dir / MODEL_FILE)
    (run_dir / "summary.txt").write_text(summary_text(final))
    info = {
        "model": cfg.model, "size": cfg.size, "classes": list(CLASSES),
        "preprocessing": cfg.preprocessing.to_dict(),
        "input": "grayscale uint8 0..255 after the preprocessing above; the model normalises itself",
        "weights_note": built.weights_note,
        "parameters": int(final.count_params()),
        "flops_per_image": model_flops(final),
        "trainable_parameters": int(sum(np.prod(w.shape) for w in final.trainable_weights)),
        "cxr_version": __version__,
    }
    # A frozen base never changed: its validation features are at hand, and running the base again (VGG16 on
    # thousands of framed copies) would take minutes on a CPU without AMX. The head on the features stored in
    # float16 gives probabilities within about 1e-3 of the saved model's.
    val_probs = None
    if built.frozen_base and not cfg.fine_tune:
        val_probs = built.head.predict(xv, batch_size=256, verbose=0).ravel()
    info = calibrated_on_validation(final, info, val_part, worst_framing=cfg.framing != "none", raw=val_probs)
    info["ood"] = fit_for_run(run_dir, train_part.images, unchanged_val.images)
    write_json(run_dir / INFO_FILE, info)
    history = read_history(run_dir)
    write_json(run_dir / "training.json", {
        "split_note": data.split.note,
        "images": {side: len(part.labels) for side, part in data.parts.items()},
        "skipped": [[str(p), why] for p, why in data.skipped],
        "epochs_run": len(history["epoch"]),
        "best_epoch": int(np.argmin(history["val_loss"])) + 1,
        "epoch_seconds_mean": float(np.mean(history["epoch_seconds"])),
        "train_seconds": float(np.sum(history["epoch_seconds"])) + (feature_seconds if built.frozen_base else 0.0),
        "feature_seconds": feature_seconds if built.frozen_base else 0.0,
        "load_seconds": load_seconds,
        "precision": cfg.precision,
        "replicas": replicas,
    })
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return run_dir


def calibrated_on_validation(model: keras.Model, info: dict, val_part, worst_framing: bool = False,
                             raw: np.ndarray | None = None) -> dict:
    """info with the temperature fitted on validation, and the threshold chosen on the calibrated probabilities:
    on the worst framing where `worst_framing` (a model trained to ignore framing) and validation has framed
    copies, else under the screening rule. A model that reads framing as pneumonia is near chance on some
    framing at every threshold: the worst-framing rule would then choose nothing meaningful.
    `raw`: the model's probabilities on the validation images where they are known already."""
    if raw is None:
        raw = Predictor.from_model(model, info).predict(val_part.images)
    temperature = fit_temperature(val_part.labels, raw)
    calibrated = apply_temperature(raw, temperature)
    if worst_framing and val_part.framings is not None:
        threshold = choose_threshold_worst_framing(val_part.labels, calibrated, val_part.framings)
        rule = FRAMED_THRESHOLD_RULE
    else:
        threshold = choose_threshold(val_part.labels, calibrated)
        rule = THRESHOLD_RULE + (POOLED if val_part.framings is not None else "")
    return {**info, "temperature": temperature,
            "calibration_on_validation": {"before": calibration(val_part.labels, raw),
                                          "after": calibration(val_part.labels, calibrated)},
            "threshold": threshold, "threshold_rule": rule}


def summary_text(model: keras.Model) -> str:
    lines = []
    model.summary(print_fn=lambda line, **_: lines.append(line), expand_nested=True)
    return "\n".join(lines) + "\n"
