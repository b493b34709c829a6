"""What a model computed for the last few arrays of images, remembered by the pixels themselves.

One process runs many steps on the same images (cxr's --then): the ensemble's calibration and evaluation,
the stress test and the site check read the same validation and test X-rays through the same compiled
models, each loading them again. The key is the pixels' SHA-256 (about 12 ms for 800 X-rays at 128 px,
against seconds of inference), so a split loaded again, a copy or the same X-rays made by another step are
recognised, and an array changed in place is not mistaken for what it was.
"""

import hashlib
import threading
from collections import OrderedDict

import numpy as np


def pixels_key(images) -> tuple:
    """The same for the same pixels in the same type, with or without a channel axis."""
    array = np.ascontiguousarray(images)
    return array.dtype.str, len(array), array.size, hashlib.sha256(array.data).hexdigest()


class Remembered:
    """compute(), or a copy of what it gave for the same `owner` (a compiled model, a feature extractor) and
    the same pixels among the last `keep` arrays. The owner is held, so its id is not reused meanwhile."""

    def __init__(self, keep: int):
        self.keep = keep
        self._recent: OrderedDict = OrderedDict()
        self._lock = threading.Lock()  # a service's threads

    def __call__(self, owner, images, compute, recompute: bool = False):
        """`recompute`: compute even if known (a timing), and remember the new result."""
        key = (id(owner), pixels_key(images))
        with self._lock:
            known = self._recent.get(key)
            if known is not None and known[0] is owner and not recompute:
                self._recent.move_to_end(key)
                return _copy(known[1])
        value = compute()
        with self._lock:
            self._recent[key] = owner, value
            while len(self._recent) > self.keep:
                self._recent.popitem(last=False)
        return _copy(value)


def _copy(value):
    """A caller may change what it gets; the remembered value stays as it was."""
    return {k: v.copy() for k, v in value.items()} if isinstance(value, dict) else value.copy()
