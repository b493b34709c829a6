"""Cache files that detect their own damage: a digest over the content, written aside and renamed.

A truncated or overwritten cache entry must never be read as data: an array file carries a digest of its
bytes, a weights file a digest beside it. A damaged file is reported in one line and the caller rebuilds it.
"""

import hashlib
import io
import logging
import os
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
MAGIC = b"CXRNPY1\n"
DIGEST_BYTES = 32


def _digest(data) -> bytes:
    return hashlib.sha256(data).digest()


def _tmp_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")


def write_atomically(path: Path, data: bytes) -> None:
    """Written aside and renamed: a killed process or a concurrent reader never sees half a file."""
    tmp = _tmp_beside(path)
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def save_array(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    payload = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)  # cache folders appear on first use
    write_atomically(path, MAGIC + _digest(payload) + payload)


def load_array(path: Path) -> np.ndarray | None:
    """The array, or None when the file is missing or damaged (damage is reported in one line)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return _damaged(path, f"unreadable ({exc.strerror or exc})")
    head = len(MAGIC) + DIGEST_BYTES
    if len(data) < head or not data.startswith(MAGIC):
        return _damaged(path, "not a cxr cache file (truncated or overwritten)")
    payload = memoryview(data)[head:]
    if _digest(payload) != data[len(MAGIC):head]:
        return _damaged(path, "checksum mismatch (truncated or overwritten)")
    try:
        return np.load(io.BytesIO(payload), allow_pickle=False)
    except (OSError, ValueError) as exc:
        return _damaged(path, f"unreadable array ({exc})")


def _damaged(path: Path, why: str) -> None:
    log.warning("damaged cache file %s: %s; rebuilding it", path, why)
    try:
        path.unlink()
    except OSError:
        pass
    return None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def seal_into(tmp: Path, path: Path) -> None:
    """Move a finished file written at `tmp` to `path`, its digest recorded beside it first (PATH.digest)."""
    write_atomically(path.with_name(path.name + ".digest"), file_sha256(tmp).encode())
    os.replace(tmp, path)


def is_sealed(path: Path) -> bool:
    """True when the file exists and matches its recorded digest; a damaged file is reported and removed."""
    if not path.exists():
        return False
    sidecar = path.with_name(path.name + ".digest")
    try:
        intact = sidecar.read_text().strip() == file_sha256(path)
    except OSError:
        intact = False
    if not intact:
        _damaged(path, "missing or mismatching digest (truncated, overwritten or half-written)")
    return intact
