"""`cxr train ...` that kills itself with SIGKILL at a chosen point, as a power cut or the OOM killer would.

    python reliability/killed_train.py mid_epoch|checkpoint|features -- train --model cnn ...

mid_epoch: after the 2nd batch of the second epoch. checkpoint: halfway through writing the resume
checkpoint of the second epoch (the file half on disk). features: halfway through writing the frozen-base
feature cache. Nothing in cxr knows about this script: it patches from outside.
"""

import os
import signal
import sys
from pathlib import Path


def _die():
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _half_written(path, write):
    """Let `write` finish into its file, cut it in half, then die: what a kill mid-write leaves."""
    write()
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    _die()


def patch(point: str) -> None:
    import keras

    import cxr.files
    import cxr.training.callbacks

    if point == "mid_epoch":
        class KillMidEpoch(cxr.training.callbacks.EpochTimer):
            def on_epoch_begin(self, epoch, logs=None):
                super().on_epoch_begin(epoch, logs)
                self._epoch = epoch

            def on_train_batch_end(self, batch, logs=None):
                if self._epoch == 1 and batch == 1:
                    _die()

        cxr.training.callbacks.EpochTimer = KillMidEpoch
        import cxr.training.fit

        cxr.training.fit.EpochTimer = KillMidEpoch
    elif point == "checkpoint":
        original, saves = keras.Model.save, []

        def save(self, filepath, *args, **kwargs):
            name = Path(filepath).name  # written aside under a hidden name, renamed when complete
            if name.startswith(".") and name.endswith(".last.keras"):
                saves.append(filepath)
                if len(saves) == 2:
                    _half_written(filepath, lambda: original(self, filepath, *args, **kwargs))
            return original(self, filepath, *args, **kwargs)

        keras.Model.save = save
    elif point == "features":
        original_write = cxr.files.write_atomically

        def write_atomically(path, *chunks):
            if Path(path).parent.name == "features":  # the feature cache (the run's own folder name may say it too)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                path.parent.mkdir(parents=True, exist_ok=True)
                _half_written(tmp, lambda: tmp.write_bytes(b"".join(chunks)))
            return original_write(path, *chunks)

        cxr.files.write_atomically = write_atomically
    else:
        raise ValueError(f"unknown kill point {point!r}")


if __name__ == "__main__":
    point, separator, *args = sys.argv[1:]
    assert separator == "--", __doc__
    patch(point)
    from cxr.cli import main

    sys.exit(main(args))
