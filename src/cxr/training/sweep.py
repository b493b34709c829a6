"""`cxr sweep CONFIG.toml --out runs/sweep-NAME`: many training configurations on Ray Tune.

Every trial is an ordinary `cxr train` in a process of its own, writing a normal run folder under
OUT/trials/. Each trial gets `cpus_per_trial` CPUs and as many TensorFlow threads, so concurrent trials do
not oversubscribe the cores. ASHA stops weak trials early on validation loss. Running the same command again
resumes an interrupted sweep: finished trials are kept, unfinished ones continue from their last epoch.
The report ranks trials on validation only.
"""

import csv
import itertools
import logging
import math
import tomllib
from pathlib import Path

from cxr.errors import UsageError
from cxr.runs.folder import read_history
from cxr.runs.info import INFO_FILE, RunInfo
from cxr.runs.settings import TrainConfig

log = logging.getLogger(__name__)
SETTINGS = {"cpus_per_trial": 1, "grace_period": 2, "reduction_factor": 2}


def read_sweep(path: Path) -> tuple[dict, dict, dict]:
    """[train] settings shared by every trial, [grid] lists whose combinations are the trials, [sweep] settings."""
    try:
        config = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the sweep configuration ({exc})") from None
    fields = set(TrainConfig.__dataclass_fields__) - {"out"}
    base, grid = config.get("train", {}), config.get("grid", {})
    unknown = (set(base) | set(grid)) - fields
    if unknown:
        raise UsageError(f"{path}: unknown training settings {sorted(unknown)}; known: {sorted(fields)}")
    if not grid or not all(isinstance(v, list) and v for v in grid.values()):
        raise UsageError(f"{path}: [grid] needs at least one setting with a list of values")
    settings = {**SETTINGS, **config.get("sweep", {})}
    return base, grid, settings


def _trial(config: dict) -> None:
    """One trial: `cxr train` with this configuration, every epoch's validation loss reported to Tune."""
    import keras
    import tensorflow as tf
    from ray import tune

    tf.config.threading.set_intra_op_parallelism_threads(config["threads"])
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from cxr.training.fit import train

    class ReportToTune(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            tune.report({"val_loss": float(logs["val_loss"]), "val_auc": float(logs.get("val_auc", math.nan)),
                         "epoch": epoch + 1})

    out = Path(config["trials_dir"]) / config["trial"]["name"]
    cfg = TrainConfig(**config["trial"]["train"], out=str(out))
    train(cfg, resume=(out / "config.json").exists(), callbacks=[ReportToTune()])


def run_sweep(config_path: Path, out: Path, address: str | None = None) -> Path:
    from cxr.data.layout import default_data_dir
    from cxr.inference.ray_batch import start_ray

    base, grid, settings = read_sweep(config_path)
    start_ray(address)  # before `import ray`: without it, one line naming the extra to install
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    if "data" not in base:  # not setdefault: that would look for the default folder even when one is given
        base["data"] = str(default_data_dir())
    out = Path(out).resolve()
    (out / "trials").mkdir(parents=True, exist_ok=True)
    (out / "sweep.toml").write_text(Path(config_path).read_text())
    cpus = int(settings["cpus_per_trial"])
    trainable = tune.with_resources(_trial, {"cpu": cpus})
    epochs = int(base.get("epochs", TrainConfig.epochs))
    trials = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    space = {"trial": tune.grid_search([{"name": _trial_name(t), "train": {**base, **t}} for t in trials]),
             "threads": cpus, "trials_dir": str(out / "trials")}
    state = out / "tune"
    if tune.Tuner.can_restore(str(state)):
        log.info("resuming the sweep in %s", out)
        tuner = tune.Tuner.restore(str(state), trainable, resume_unfinished=True, resume_errored=True,
                                   param_space=space)
    else:
        # max_t one past the last epoch: a trial that gets there finishes its run folder instead of being cut.
        scheduler = ASHAScheduler(time_attr="epoch", max_t=epochs + 1, grace_period=int(settings["grace_period"]),
                                  reduction_factor=int(settings["reduction_factor"]))
        tuner = tune.Tuner(trainable, param_space=space,
                           tune_config=tune.TuneConfig(metric="val_loss", mode="min", scheduler=scheduler),
                           run_config=tune.RunConfig(name="tune", storage_path=str(out), verbose=0))
    results = tuner.fit()
    rows = [_trial_row(out / "trials" / result.config["trial"]["name"], result, grid) for result in results]
    return write_report(rows, grid, out)


def _trial_name(setting: dict) -> str:
    return "-".join(f"{key}={value}" for key, value in setting.items())


def _trial_row(run: Path, result, grid: dict) -> dict:
    setting = {key: result.config["trial"]["train"][key] for key in grid}
    row = {**setting, "run": str(run), "status": "failed", "epochs": 0, "best_val_loss": math.nan,
           "val_auc_at_best": math.nan}
    if not (run / "history.csv").exists():
        row["status"] = f"failed: {result.error}" if result.error else "no epoch finished"
        return row
    history = read_history(run)
    best = min(range(len(history["val_loss"])), key=lambda i: history["val_loss"][i])
    finished = (run / INFO_FILE).exists()
    row.update(epochs=len(history["val_loss"]), best_val_loss=history["val_loss"][best],
               val_auc_at_best=history.get("val_auc", [math.nan] * (best + 1))[best],
               status="finished" if finished else ("failed" if result.error else "stopped early by ASHA"))
    if finished:
        row["threshold"] = RunInfo.read(run).threshold
    return row


def write_report(rows: list[dict], grid: dict, out: Path) -> Path:
    """trials.csv and report.md, ranked by validation loss (best epoch); best_run.txt names the top finished run."""
    rows = sorted(rows, key=lambda r: (math.isnan(r["best_val_loss"]), r["best_val_loss"]))
    columns = [*grid, "status", "epochs", "best_val_loss", "val_auc_at_best", "run"]
    with open(out / "trials.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = ["# Sweep report", "", "Ranked on the validation split only (lowest validation loss at the best epoch); "
             "ASHA stopped weak trials early on the same loss.", "",
             "| rank | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for rank, row in enumerate(rows, start=1):
        cells = [f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c]) for c in columns]
        lines.append(f"| {rank} | " + " | ".join(cells) + " |")
    finished = [r for r in rows if r["status"] == "finished"]
    if finished:
        (out / "best_run.txt").write_text(finished[0]["run"] + "\n")
        lines += ["", f"Best finished trial: `{finished[0]['run']}` (serve it, or `cxr evaluate` it on data "
                  "none of the trials chose anything on)."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out / "report.md"
