"""`cxr predict RUN PATH... --ray`: batch prediction on Ray Data, on this machine or on a Ray cluster.

Files are listed here, decoded and preprocessed in parallel Ray tasks, and scored in a pool of actors that
each load the model once; every score goes through the same Predictor and row format as the local path.
Results stream back in input order (nothing collects the whole archive), and a worker that dies has its
batch retried elsewhere.
"""

import logging
import os
from pathlib import Path

import numpy as np

from cxr.data.cache import load_images
from cxr.data.preprocess import Preprocessing
from cxr.errors import UsageError

log = logging.getLogger(__name__)
BATCH = 64


def start_ray(address: str | None = None) -> None:
    """Join the cluster at `address` (or $RAY_ADDRESS), else start a local Ray on this machine."""
    try:
        import ray
        import ray.data
        import ray.tune  # noqa: F401  (the cluster extra installs both; a sweep needs Tune)
    except ImportError:
        raise UsageError("--ray needs the cluster extra: pip install -e '.[cluster]' in the cxr folder") from None
    if not ray.is_initialized():
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local Ray for one command: no token to manage
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False, configure_logging=False)
        logging.getLogger("ray").setLevel(logging.WARNING)


def _decode_batch(batch: dict, preprocessing: Preprocessing) -> dict:
    """Bytes paths -> preprocessed images through the local loader, or the reason a file cannot be used."""
    paths = [Path(os.fsdecode(bytes(raw))) for raw in batch["path"]]
    loaded = load_images(paths, preprocessing, use_cache=False)
    where = {path: i for i, path in enumerate(paths)}
    images = np.zeros((len(paths), preprocessing.size, preprocessing.size), np.uint8)
    images[[where[path] for path in loaded.paths]] = loaded.images
    errors = np.array([""] * len(paths), dtype=object)
    for path, reason in loaded.skipped:
        errors[where[path]] = reason
    return {"path": batch["path"], "image": images, "error": errors}


class _Scorer:
    """One model per actor, loaded once; rows made by the same code as the local path."""

    def __init__(self, run_dir: str, engine: str, precision: str, threads: int):
        if engine == "keras":  # one actor per core: TensorFlow's own threads would oversubscribe them
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        from cxr.inference.predictor import Predictor

        self.predictor = Predictor(Path(run_dir), engine=engine, precision=precision)

    def __call__(self, batch: dict) -> dict:
        import json

        from cxr.inference.batch import result_rows

        good = np.array([e == "" for e in batch["error"]], dtype=bool)
        paths = [os.fsdecode(bytes(p)) for p in batch["path"][good]]
        rows, _ = result_rows(self.predictor, paths, batch["image"][good])
        out = np.array([""] * len(good), dtype=object)
        out[np.flatnonzero(good)] = [json.dumps(row) for row in rows]
        return {"path": batch["path"], "row": out, "error": batch["error"]}


def ray_batches(run_dir: Path, files: list[Path], preprocessing: Preprocessing, engine: str = "keras",
                precision: str = "auto", workers: int = 2, address: str | None = None):
    """(rows, skipped) per batch, in input order, like cxr.inference.batch.predict_batches."""
    import json

    start_ray(address)  # before `import ray`: without it, one line naming the extra to install
    import ray

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # rows come back in the order of the inputs
    context.enable_progress_bars = False
    items = [{"path": os.fsencode(str(p))} for p in files]  # bytes: a file name need not be UTF-8
    if not items:
        return
    dataset = (
        ray.data.from_items(items, override_num_blocks=min(len(items), max(2 * workers, len(items) // BATCH)))
        # Logical CPU shares: the scoring actors never hold every CPU, so decoding tasks always find room
        # (and, asking for a different share, they stay tasks of their own instead of fusing into the actors).
        .map_batches(_decode_batch, batch_size=BATCH, batch_format="numpy", num_cpus=0.25,
                     fn_kwargs={"preprocessing": preprocessing})
        # Ray Data restarts a dead actor and retries its batch (max_restarts and max_task_retries: -1).
        .map_batches(_Scorer, batch_size=BATCH, batch_format="numpy", num_cpus=0.5,
                     compute=ray.data.ActorPoolStrategy(size=workers),
                     fn_constructor_kwargs={"run_dir": str(run_dir), "engine": engine, "precision": precision,
                                            "threads": 1})
    )
    for name in ("ray", "ray.data"):  # Ray's own progress lines; a failure still surfaces as an exception
        logging.getLogger(name).setLevel(logging.WARNING)
    for batch in dataset.iter_batches(batch_size=BATCH, batch_format="numpy", prefetch_batches=2):
        rows, skipped = [], []
        for raw, row, error in zip(batch["path"], batch["row"], batch["error"]):
            path = os.fsdecode(bytes(raw))
            if error:
                log.warning("skipped %s: %s", path, error)
                skipped.append((Path(path), error))
            else:
                rows.append({**json.loads(row), "path": path})
        yield rows, skipped
