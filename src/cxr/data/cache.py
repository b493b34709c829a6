"""Decode each image once: uint8 arrays cached on disk, keyed by file content and preprocessing."""

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path

import numpy as np

from cxr.checked import load_array, save_array
from cxr.data.images import decode
from cxr.data.pixels import ImageError
from cxr.data.preprocess import Preprocessing

log = logging.getLogger(__name__)
PROCESS_POOL_MIN_FILES = 500
SUFFIX = ".cxa"  # an array with its checksum (cxr.checked), never read as a plain .npy


def cache_root() -> Path:
    return Path(os.environ.get("CXR_CACHE", Path.home() / ".cache" / "cxr"))


def content_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


@dataclass
class LoadedImages:
    images: np.ndarray  # (n, size, size) uint8 of the files that loaded
    paths: list[Path]  # the files that loaded, in input order
    keys: dict[Path, str] = field(default_factory=dict)  # path -> content key, for every readable file
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (path, reason)


def _load_one(path: Path, prep: Preprocessing, folder: Path | None):
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, None, f"cannot read file: {exc.strerror or exc}"
    key = content_key(data)
    if folder is None:  # one-off predictions: decode, do not cache
        try:
            return decode(data, prep), key, None
        except ImageError as exc:
            return None, key, str(exc)
    cached = folder / key[:2] / f"{key}{SUFFIX}"
    image = load_array(cached)
    if image is not None:
        return image, key, None
    try:
        image = decode(data, prep)
    except ImageError as exc:
        return None, key, str(exc)
    save_array(cached, image)
    return image, key, None


def _file_key(path: Path) -> str | None:
    try:
        return content_key(path.read_bytes())
    except OSError:
        return None


def _set_path(folder: Path, keys: list[str]) -> Path:
    return folder / "sets" / f"{hashlib.sha256(chr(10).join(keys).encode()).hexdigest()[:32]}{SUFFIX}"


def load_images(
    paths, prep: Preprocessing, cache_dir: Path | None = None, progress: bool = False, use_cache: bool = True
) -> LoadedImages:
    """Load many files through the cache; bad files are reported (one line each) and skipped.

    Besides one entry per image, a set that loaded whole is also stored as one array: thousands of
    small file reads cost more than decoding a small JPEG, so a warm load of a whole set is one read.
    """
    folder = (cache_dir or cache_root()) / "images" / prep.key if use_cache else None
    paths = [Path(p) for p in paths]
    if folder is not None and paths:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            file_keys = list(pool.map(_file_key, paths))
        whole_set = _set_path(folder, file_keys) if None not in file_keys else None
        images = load_array(whole_set) if whole_set is not None else None
        if images is not None:
            return LoadedImages(images, paths, dict(zip(paths, file_keys)))
        loaded = _load_each(paths, prep, folder, progress)
        if whole_set is not None and not loaded.skipped:
            save_array(whole_set, loaded.images)
        return loaded
    return _load_each(paths, prep, folder, progress)


def _load_all(paths: list[Path], prep: Preprocessing, folder: Path | None):
    """(image, key, error) of each file in order: in worker processes for a large set, so decoding and
    cache writing use every core (much of that work holds Python's GIL, so threads would only overlap the
    file reads); in threads for a few files, where starting processes would cost more than it saves."""
    if len(paths) >= PROCESS_POOL_MIN_FILES and (os.cpu_count() or 1) > 1:
        from joblib import Parallel, delayed

        # joblib's loky workers are fresh interpreters (forking a process that has started TensorFlow's
        # threads is unsafe) that do not re-run the caller's script, and later loads reuse them.
        yield from Parallel(n_jobs=-1, batch_size=64, return_as="generator")(
            delayed(_load_one)(path, prep, folder) for path in paths)
    else:
        with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
            yield from pool.map(_load_one, paths, repeat(prep), repeat(folder))


def _load_each(paths: list[Path], prep: Preprocessing, folder: Path | None, progress: bool) -> LoadedImages:
    bar = None
    if progress and len(paths) > 200 and log.isEnabledFor(logging.INFO):  # `cxr -q`: no bar
        import keras

        bar = keras.utils.Progbar(len(paths), unit_name="image")
    images, loaded, keys, skipped = [], [], {}, []
    # The loader first: zip then runs it to its end, so its pool shuts down here, not whenever it is collected.
    for i, ((image, key, error), path) in enumerate(zip(_load_all(paths, prep, folder), paths)):
        if key is not None:
            keys[path] = key
        if error:
            log.warning("skipped %s: %s", path, error)
            skipped.append((path, error))
        else:
            images.append(image)
            loaded.append(path)
        if bar is not None and (i + 1) % 100 == 0:
            bar.update(i + 1)
    if bar is not None:
        bar.update(len(paths), finalize=True)
    stacked = np.stack(images) if images else np.zeros((0, prep.size, prep.size), np.uint8)
    return LoadedImages(stacked, loaded, keys, skipped)
