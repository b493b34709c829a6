"""Decode each image once: uint8 arrays cached on disk, keyed by file content, size and preprocessing."""

import hashlib
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxr.data.images import PREPROCESSING_VERSION, ImageError, decode

log = logging.getLogger(__name__)


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


def _load_one(path: Path, size: int, folder: Path | None):
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, None, f"cannot read file: {exc.strerror or exc}"
    key = content_key(data)
    if folder is None:  # one-off predictions: decode, do not cache
        try:
            return decode(data, size), key, None
        except ImageError as exc:
            return None, key, str(exc)
    cached = folder / key[:2] / f"{key}.npy"
    if cached.exists():
        try:
            return np.load(cached), key, None
        except (OSError, ValueError):
            pass  # a damaged cache entry is simply decoded again
    try:
        image = decode(data, size)
    except ImageError as exc:
        return None, key, str(exc)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")  # duplicates decode at once
    with open(tmp, "wb") as f:
        np.save(f, image)
    os.replace(tmp, cached)  # atomic: a killed run never leaves half an entry
    return image, key, None


def load_images(
    paths, size: int, cache_dir: Path | None = None, progress: bool = False, use_cache: bool = True
) -> LoadedImages:
    """Load many files through the cache; bad files are reported (one line each) and skipped."""
    folder = (cache_dir or cache_root()) / "images" / f"{size}px-v{PREPROCESSING_VERSION}" if use_cache else None
    paths = [Path(p) for p in paths]
    bar = None
    if progress and len(paths) > 200:
        import keras

        bar = keras.utils.Progbar(len(paths), unit_name="image")
    images, loaded, keys, skipped = [], [], {}, []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:  # Pillow decodes outside the GIL
        for i, (path, (image, key, error)) in enumerate(
            zip(paths, pool.map(lambda p: _load_one(p, size, folder), paths))
        ):
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
    stacked = np.stack(images) if images else np.zeros((0, size, size), np.uint8)
    return LoadedImages(stacked, loaded, keys, skipped)
