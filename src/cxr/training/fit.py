"""Training: Keras fit with early stopping on validation loss, the best checkpoint kept, resume after a kill,
and the decision threshold chosen on validation through the same Predictor that serves the model.

`train` reads as its steps: start (or resume) the run folder, prepare the data, fit, save the model, then
describe it (model.json) and record how it trained (training.json), each file written once, by its owner.
"""

import dataclasses
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from cxr import CLASSES, __version__
from cxr.data.dataset import Prepared, prepare
from cxr.data.framing import framed_validation
from cxr.errors import UsageError
from cxr.inference.precision import resolve_precision
from cxr.models import Built, build, copy_in_precision, model_flops
from cxr.runs.folder import RunError, load_keras_model, read_history, read_json, save_model, write_json
from cxr.runs.info import RunInfo
from cxr.runs.record import TrainingRecord
from cxr.runs.settings import TrainConfig
from cxr.training.batches import fine_training_images, trained_against, training_batches
from cxr.training.calibrate import calibrated_on_validation
from cxr.training.callbacks import EpochSeeds, EpochTimer, ResumableEarlyStopping, SaveForResume, truncate_history
from cxr.training.devices import distribution
from cxr.training.frozen_features import BaseOutputs, cached_features
from cxr.training.guards import frozen_base_blocks, with_guards
from cxr.training.probe_head import fit_head_on_features

log = logging.getLogger(__name__)
MIN_DELTA = 1e-3  # smallest drop of validation loss that counts as an improvement for early stopping


def compile_model(model: keras.Model, learning_rate: float, label_smoothing: float = 0.0, ema: float = 0.0) -> None:
    """Adam on binary cross-entropy; `ema` > 0 also keeps an exponential moving average of the weights."""
    loss = keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)
    optimizer = keras.optimizers.Adam(learning_rate, use_ema=ema > 0, ema_momentum=ema or 0.99)
    # Metric objects, not names: a name becomes a metric only inside the first step, which then traces twice.
    metrics = [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]
    model.compile(optimizer, loss, metrics=metrics)
    # Built now, not inside the first training step: slot variables created while tracing make TensorFlow trace
    # the whole step a second time (about 15 s for DenseNet121 on a CPU).
    optimizer.build(model.trainable_variables)


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
        compile_model(model, learning_rate, cfg.label_smoothing, cfg.ema)
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
    # With --ema, validation, checkpoints and early stopping see the averaged weights: swapped in at each epoch's
    # end (before the callbacks after it) and out at the next one's start, which also holds for a resumed epoch.
    averaged = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if cfg.ema else []
    callbacks = [
        EpochTimer(),
        EpochSeeds(cfg.seed),
        # A function of the epoch alone (unlike ReduceLROnPlateau), so a resumed run follows the same schedule.
        keras.callbacks.LearningRateScheduler(lambda epoch: learning_rate * cfg.lr_decay ** epoch),
        *averaged,
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


def _unfreeze_last_convs(built: Built, n: int) -> None:
    base = next(layer for layer in built.features.layers if isinstance(layer, keras.Model))
    base.trainable = True
    convs = [layer for layer in base.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.SeparableConv2D))]
    for layer in base.layers:
        layer.trainable = layer in convs[-n:]


@dataclass
class Fitted:
    """What the fitting steps leave for the describing ones."""

    built: Built
    data: Prepared
    val_part: object  # the validation split as every choice sees it (with its changed copies)
    unchanged_val: object
    feature_seconds: float
    load_seconds: float
    replicas: int
    val_probs: np.ndarray | None  # the head's validation probabilities, where the features were at hand
    base_outputs: tuple[BaseOutputs, BaseOutputs] | None  # a frozen base's, on training and unchanged validation


def train(cfg: TrainConfig, resume: bool = False, callbacks: list | None = None) -> Path:
    """Train, calibrate and save a run; `callbacks` (Keras) also see every epoch, e.g. a sweep's reporter."""
    run_dir, state = _start(cfg, resume)
    fitted = _fit_stages(cfg, run_dir, state, callbacks or [])
    final = _save_model(cfg, run_dir, fitted.built)
    _describe(cfg, run_dir, final, fitted).write(run_dir)
    _record(cfg, run_dir, fitted).write(run_dir)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return run_dir


def _start(cfg: TrainConfig, resume: bool) -> tuple[Path, dict | None]:
    """The run folder (new, or the one being resumed with its saved state), config.json, seeds and precision."""
    run_dir, state = Path(cfg.out), None
    if resume:
        state_file = run_dir / "checkpoints" / "state.json"
        if state_file.exists():
            state = read_json(state_file)
        else:
            log.warning("%s stopped before its first epoch ended; training it from the start", run_dir)
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise RunError(f"{run_dir} already holds a run; choose another --out, or continue it with --resume {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.precision = resolve_precision(cfg.precision, cfg.model)
    if not resume:
        write_json(run_dir / "config.json", {**dataclasses.asdict(cfg), "cxr_version": __version__})
    return run_dir, state


def _fit_stages(cfg: TrainConfig, run_dir: Path, state: dict | None, callbacks: list) -> Fitted:
    """Prepare the data, build the model and fit it (then fine-tune it, where asked), resuming where a killed
    run stopped."""
    scope, replicas = distribution(cfg.devices)  # before anything starts TensorFlow's runtime
    keras.utils.set_random_seed(cfg.seed)
    keras.mixed_precision.set_global_policy(cfg.precision)
    started = time.perf_counter()
    data = prepare(Path(cfg.data), cfg.split, cfg.split_seed, cfg.preprocessing, cfg.fractions, run_dir)
    load_seconds = time.perf_counter() - started
    train_part, unchanged_val = data.parts["train"], data.parts["val"]
    log.info("split: %s", data.split.note)
    # Every choice below (early stopping, temperature, threshold) sees the framing and acquisition changes.
    val_part = framed_validation(unchanged_val, cfg.preprocessing) if cfg.framed_validation else unchanged_val

    with scope:  # several devices: the model's variables are mirrored on each
        built = build(cfg.model, cfg.size, weights=cfg.weights)
        feature_started = time.perf_counter()
        for flag, value in (("framing", cfg.framing), ("acquisition", cfg.acquisition)):
            if value != "none" and built.frozen_base:
                raise UsageError(f"--{flag} {value} changes the images each epoch; {cfg.model} trains on "
                                 "features computed once from a frozen base")
        if cfg.probe_first and built.frozen_base:  # refused before minutes of feature computation, not after
            raise UsageError(f"--probe-first is for end-to-end models; {cfg.model} trains its head only")
        if built.frozen_base:  # the frozen base gives the same features every epoch: compute them once
            outputs = [cached_features(built, part.images, cfg) for part in (train_part, val_part)]
            # The guards read the unchanged validation split: the same images unless validation is framed.
            unchanged = outputs[1] if val_part is unchanged_val else cached_features(built, unchanged_val.images, cfg)
            outputs.append(unchanged)
            x, xv = outputs[0].features, outputs[1].features
            first = built.head
        else:
            x, xv = train_part.images, val_part.images  # uint8: the model casts each batch (4x less memory)
            first = built.model
        if cfg.probe_first and state is None:
            fit_head_on_features(built.model, x, train_part.labels, cfg.batch_size)
        feature_seconds = time.perf_counter() - feature_started if built.frozen_base or cfg.probe_first else 0.0

        if state is None or state["stage"] == "fit":
            _fit(run_dir, first, x, train_part.labels, xv, val_part.labels, cfg, "fit", cfg.epochs,
                 cfg.learning_rate, state, callbacks, fine_training_images(train_part, cfg))
        elif built.frozen_base:
            first.set_weights(load_keras_model(run_dir / "checkpoints" / "fit_best.keras").get_weights())
        if cfg.fine_tune and built.frozen_base:
            _unfreeze_last_convs(built, cfg.fine_tune)
            _fit(run_dir, built.model, train_part.images, train_part.labels,
                 val_part.images, val_part.labels, cfg, "fine_tune", cfg.fine_tune_epochs,
                 cfg.learning_rate / 100, state, callbacks)
    # A frozen base never changed: its validation features are at hand, and running the base again (VGG16 on
    # thousands of changed copies) would take minutes on a CPU without AMX. The head on the features stored in
    # float16 gives probabilities within about 1e-3 of the saved model's.
    never_changed = built.frozen_base and not cfg.fine_tune
    val_probs = built.head.predict(xv, batch_size=256, verbose=0).ravel() if never_changed else None
    return Fitted(built, data, val_part, unchanged_val, feature_seconds, load_seconds, replicas, val_probs,
                  (outputs[0], outputs[2]) if never_changed else None)


def _save_model(cfg: TrainConfig, run_dir: Path, built: Built) -> keras.Model:
    """model.keras in float32 (it predicts and exports the same on any CPU) and its layer summary."""
    final = built.model
    if cfg.precision != "float32":
        final = copy_in_precision(cfg.model, cfg.size, built.model, "float32")
    keras.mixed_precision.set_global_policy("float32")
    save_model(final, run_dir)
    (run_dir / "summary.txt").write_text(summary_text(final))
    return final


def _describe(cfg: TrainConfig, run_dir: Path, final: keras.Model, fitted: Fitted) -> RunInfo:
    """The run's RunInfo: the input contract, the temperature and threshold chosen on validation, the guards."""
    info = RunInfo(
        model=cfg.model, preprocessing=cfg.preprocessing, classes=CLASSES, weights_note=fitted.built.weights_note,
        parameters=int(final.count_params()), flops_per_image=model_flops(final),
        trainable_parameters=int(sum(np.prod(w.shape) for w in final.trainable_weights)),
        trained_against=trained_against(cfg))
    robust = cfg.framing != "none" or cfg.acquisition != "none"  # trained to ignore the shifts validation shows
    info = calibrated_on_validation(final, info, fitted.val_part, worst_case=robust, raw=fitted.val_probs)
    blocks = [frozen_base_blocks(final, outputs) for outputs in fitted.base_outputs] if fitted.base_outputs else None
    return with_guards(run_dir, final, info, fitted.data.parts["train"].images, fitted.unchanged_val.images, blocks)


def _record(cfg: TrainConfig, run_dir: Path, fitted: Fitted) -> TrainingRecord:
    history = read_history(run_dir)
    return TrainingRecord(
        split_note=fitted.data.split.note,
        images={side: len(part.labels) for side, part in fitted.data.parts.items()},
        skipped=tuple((str(p), why) for p, why in fitted.data.skipped),
        epochs_run=len(history["epoch"]), best_epoch=int(np.argmin(history["val_loss"])) + 1,
        epoch_seconds_mean=float(np.mean(history["epoch_seconds"])),
        train_seconds=float(np.sum(history["epoch_seconds"])) + fitted.feature_seconds,
        feature_seconds=fitted.feature_seconds, load_seconds=fitted.load_seconds, precision=cfg.precision,
        replicas=fitted.replicas)


def summary_text(model: keras.Model) -> str:
    lines = []
    model.summary(print_fn=lambda line, **_: lines.append(line), expand_nested=True)
    return "\n".join(lines) + "\n"
