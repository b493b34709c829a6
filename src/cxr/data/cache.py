"""Decode each image once: uint8 arrays cached on disk, keyed by file content and preprocessing.

A load stores what it decoded as one array (a "set", with the content key of each row beside it): one
write and one checksum for thousands of small images, and one read when the same files are loaded again.
A load of other files takes the rows it needs from the stored sets and decodes only the rest.
"""

import hashlib
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path

import numpy as np

from cxr.data.images import decode
from cxr.data.pixels import ImageError
from cxr.data.preprocess import Preprocessing
from cxr.files import load_array, save_array

log = logging.getLogger(__name__)
PROCESS_POOL_MIN_FILES = 500
CHUNK_FILES = 128  # files per task in the process pool
SUFFIX = ".cxa"  # an array with its checksum (cxr.files), never read as a plain .npy
KEYS_SUFFIX = ".keys" + SUFFIX  # beside each set: the content key of each of its rows
_writers: list[threading.Thread] = []


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


def _load_one(path: Path, prep: Preprocessing):
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, None, f"cannot read file: {exc.strerror or exc}"
    key = content_key(data)
    try:
        return decode(data, prep), key, None
    except ImageError as exc:
        return None, key, str(exc)


def _load_chunk(paths: list[Path], prep: Preprocessing):
    """(images stacked, keys, errors) of consecutive files; a file that failed leaves a blank row."""
    images = np.zeros((len(paths), prep.size, prep.size), np.uint8)
    keys, errors = [], []
    for i, path in enumerate(paths):
        image, key, error = _load_one(path, prep)
        if image is not None:
            images[i] = image
        keys.append(key)
        errors.append(error)
    return images, keys, errors


def _file_key(path: Path) -> str | None:
    try:
        return content_key(path.read_bytes())
    except OSError:
        return None


def _set_path(folder: Path, keys) -> Path:
    return folder / "sets" / f"{hashlib.sha256(chr(10).join(keys).encode()).hexdigest()[:32]}{SUFFIX}"


def keys_of(set_path: Path) -> Path:
    return set_path.with_name(set_path.name.removesuffix(SUFFIX) + KEYS_SUFFIX)


def set_of(keys_path: Path) -> Path:
    """The set whose row keys `keys_path` holds (the inverse of keys_of)."""
    return keys_path.with_name(keys_path.name.removesuffix(KEYS_SUFFIX) + SUFFIX)


def _stored_rows(folder: Path, wanted: set[str]) -> dict[str, np.ndarray]:
    """Images of the `wanted` content keys found in the stored sets, newest set first."""
    found = {}
    sets = sorted((folder / "sets").glob(f"*{KEYS_SUFFIX}"), key=lambda p: p.stat().st_mtime, reverse=True)
    for keys_file in sets:
        if wanted <= found.keys():
            break
        keys = load_array(keys_file)
        if keys is None or not (wanted - found.keys()) & set(keys.tolist()):
            continue
        images = load_array(set_of(keys_file))
        if images is None or len(images) != len(keys):
            continue
        found.update((k, images[i]) for i, k in enumerate(keys.tolist()) if k in wanted and k not in found)
    return found


def _save_set(folder: Path, images: np.ndarray, keys: list[str]) -> None:
    path = _set_path(folder, keys)
    if not path.exists():
        save_array(path, images)
        save_array(keys_of(path), np.array(keys))  # written last: a set without its keys is never used


def _save_in_background(folder: Path, images: np.ndarray, keys: list[str]) -> None:
    """Off the caller's path: the images are in memory already. The interpreter waits for the write at
    exit, and the next load waits for it first (it may read the set)."""
    writer = threading.Thread(target=_save_set, args=(folder, images, keys), name="cxr-cache-writer")
    _writers.append(writer)
    writer.start()


def wait_for_writes() -> None:
    while _writers:
        _writers.pop().join()


def load_images(
    paths, prep: Preprocessing, cache_dir: Path | None = None, progress: bool = False, use_cache: bool = True
) -> LoadedImages:
    """Load many files through the cache; bad files are reported (one line each) and skipped.

    The images come back read-only (the cache may still be writing them): a caller changes a copy.
    """
    paths = [Path(p) for p in paths]
    if not use_cache or not paths:
        images, loaded, keys, skipped = _load_each(paths, prep, progress)
        return LoadedImages(_stacked(images, prep), loaded, keys, skipped)
    wait_for_writes()
    folder = (cache_dir or cache_root()) / "images" / prep.key
    if (folder / "sets").is_dir():
        file_keys = [_file_key(p) for p in paths]  # in one thread: for small files, 3x faster than a pool
        readable = [k for k in file_keys if k is not None]
        if len(readable) == len(paths) and (images := load_array(_set_path(folder, readable))) is not None:
            images.flags.writeable = False
            return LoadedImages(images, paths, dict(zip(paths, file_keys)))
        stored = _stored_rows(folder, set(readable))
    else:  # nothing stored for this preprocessing: no lookup, so each file is read and hashed once, as it decodes
        file_keys, stored = [None] * len(paths), {}
    fresh_images, fresh_paths, fresh_keys, skipped = _load_each(
        [p for p, k in zip(paths, file_keys) if k not in stored], prep, progress)
    decoded = dict(zip(fresh_paths, fresh_images))
    loaded = [p for p, k in zip(paths, file_keys) if k in stored or p in decoded]
    keys = {p: k for p, k in zip(paths, file_keys) if k is not None} | fresh_keys
    result = LoadedImages(_stacked([stored.get(keys[p], decoded.get(p)) for p in loaded], prep), loaded, keys,
                          skipped)
    if loaded:
        result.images.flags.writeable = False
        _save_in_background(folder, result.images, [keys[p] for p in loaded])
    return result


def _stacked(images: list[np.ndarray], prep: Preprocessing) -> np.ndarray:
    """The images as one array, allocated once (first touches of fresh memory cost)."""
    stacked = np.empty((len(images), prep.size, prep.size), np.uint8)
    for i, image in enumerate(images):
        stacked[i] = image
    return stacked


def _load_all(paths: list[Path], prep: Preprocessing):
    """(image, key, error) of each file in order: in worker processes for a large set, so decoding uses
    every core (much of that work holds Python's GIL, so threads would only overlap the file reads); in
    threads for a few files, where starting processes would cost more than it saves."""
    if len(paths) >= PROCESS_POOL_MIN_FILES and (os.cpu_count() or 1) > 1:
        from joblib import Parallel, delayed

        # joblib's loky workers are fresh interpreters (forking a process that has started TensorFlow's
        # threads is unsafe) that do not re-run the caller's script, and later loads reuse them. A task is
        # a chunk of files whose images come back as one array: one pickle instead of one per image.
        chunks = Parallel(n_jobs=-1, return_as="generator")(
            delayed(_load_chunk)(paths[i: i + CHUNK_FILES], prep) for i in range(0, len(paths), CHUNK_FILES))
        for images, keys, errors in chunks:
            yield from zip(images, keys, errors)
    else:
        with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
            yield from pool.map(_load_one, paths, repeat(prep))


def _load_each(paths: list[Path], prep: Preprocessing, progress: bool):
    """(images, their paths, path -> content key of every readable file, (path, reason) of each skipped)."""
    bar = None
    if progress and len(paths) > 200 and log.isEnabledFor(logging.INFO):  # `cxr -q`: no bar
        import keras

        bar = keras.utils.Progbar(len(paths), unit_name="image")
    images, loaded, keys, skipped = [], [], {}, []
    # The loader first: zip then runs it to its end, so its pool shuts down here, not whenever it is collected.
    for i, ((image, key, error), path) in enumerate(zip(_load_all(paths, prep), paths)):
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
    return images, loaded, keys, skipped  # a list of images: the caller stacks it once
