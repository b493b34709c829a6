"""Cache files that detect their own damage: a digest over the content, written aside and renamed.

A truncated or overwritten cache entry must never be read as data: an array file carries a digest of its
bytes, a weights file a digest beside it. A damaged file is reported in one line and the caller rebuilds it.
"""

import contextlib
import hashlib
import io
import json
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


@contextlib.contextmanager
def written_aside(path: Path):
    """A hidden path beside `path` (same name ending, for writers that check it) to write the file to; it
    replaces `path` only when the block ends without an error, so a killed process or a concurrent reader
    never sees half a file. The one place cxr renames a file into place (tests/test_architecture.py)."""
    path = Path(path)
    tmp = path.with_name(f".{os.getpid()}-{threading.get_ident()}.{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomically(path: Path, *chunks) -> None:
    """The chunks (bytes-like) written to `path` through `written_aside`."""
    with written_aside(path) as tmp, open(tmp, "wb") as f:
        for chunk in chunks:
            f.write(chunk)


def save_array(path: Path, array: np.ndarray) -> None:
    """The array in .npy form after MAGIC and its digest; the pixels are hashed and written where they lie
    (no copy: a cached set is ~90 MB)."""
    array = np.ascontiguousarray(array)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    pixels = array.reshape(-1).view(np.uint8).data
    digest = hashlib.sha256(header.getvalue())
    digest.update(pixels)
    path.parent.mkdir(parents=True, exist_ok=True)  # cache folders appear on first use
    write_atomically(path, MAGIC, digest.digest(), header.getvalue(), pixels)


def load_array(path: Path) -> np.ndarray | None:
    """The array, or None when the file is missing or damaged (damage is reported in one line). The array
    is a view of the bytes read (no copy), and writeable."""
    try:
        with open(path, "rb") as f:
            data = bytearray(os.fstat(f.fileno()).st_size)
            f.readinto(data)
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
        header = io.BytesIO(payload[:4096])
        if np.lib.format.read_magic(header) != (1, 0):
            return np.load(io.BytesIO(payload), allow_pickle=False)
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(header)
        if dtype.hasobject:
            raise ValueError("object arrays are not cached")
        flat = np.frombuffer(data, dtype, count=int(np.prod(shape)), offset=head + header.tell())
        return flat.reshape(shape, order="F" if fortran else "C")
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


@contextlib.contextmanager
def sealed(path: Path):
    """`written_aside`, and the finished file's digest recorded beside it first (PATH.digest)."""
    with written_aside(path) as tmp:
        yield tmp
        write_atomically(path.with_name(path.name + ".digest"), file_sha256(tmp).encode())


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


def write_json(path: Path, obj) -> None:
    """JSON, indented, written atomically."""
    write_atomically(Path(path), (json.dumps(obj, indent=2, default=str) + "\n").encode())


def read_json(path: Path) -> dict:
    """A cxr JSON file; a missing or broken one is a RunError naming it."""
    from cxr.errors import RunError

    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RunError(f"{path}: not found (is this a cxr run folder?)") from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}: not valid JSON ({exc})") from None
