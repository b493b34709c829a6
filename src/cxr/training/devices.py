"""Several devices on one machine: tf.distribute.MirroredStrategy over GPUs, or over logical CPU devices.

Each replica takes a share of every batch and the gradients are averaged, so N devices train one model.
(Several machines are out of scope: Keras 3 cannot fit under MultiWorkerMirroredStrategy.)
"""

import contextlib
import os

from cxr.errors import UsageError


def distribution(devices: str | int):
    """(context to build and train the model in, number of replicas). "1": this process's default device."""
    count = os.cpu_count() if devices == "all" else int(devices)
    if count is None or count < 1:
        raise UsageError(f"--devices {devices}: give a number of devices (1 or more) or 'all'")
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if devices == "all" and gpus:
        count = len(gpus)
    if count == 1:
        return contextlib.nullcontext(), 1
    if gpus:
        if count > len(gpus):
            raise UsageError(f"--devices {count}: this machine has {len(gpus)} GPUs")
        names = [f"/gpu:{i}" for i in range(count)]
    else:  # split the CPU into logical devices; must happen before TensorFlow starts its runtime
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
        except RuntimeError:
            if len(tf.config.list_logical_devices("CPU")) < count:
                raise UsageError(f"--devices {count}: TensorFlow had already started with fewer CPU devices") from None
        names = [f"/cpu:{i}" for i in range(count)]
    strategy = tf.distribute.MirroredStrategy(names)
    return strategy.scope(), strategy.num_replicas_in_sync
