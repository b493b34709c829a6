"""What the reliability checks share: the real data, `cxr` in a subprocess, a served run."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CXR_SHARED_DATA", ROOT / ".." / "shared" / "data")).resolve()
CHEST_XRAY = SHARED / "chest_xray"
FULLRES = SHARED / "fullres_sample"
TRACEBACK = "Traceback (most recent call last)"


def cxr(*args, env=None, timeout=1800, **kwargs) -> subprocess.CompletedProcess:
    """`cxr ARGS` as a user runs it; output captured as bytes decoded leniently (file names may be any bytes)."""
    result = subprocess.run([sys.executable, "-m", "cxr.cli", "-q", *map(str, args)], capture_output=True,
                            timeout=timeout, env=env, **kwargs)
    result.stdout = result.stdout.decode("utf-8", "surrogateescape")
    result.stderr = result.stderr.decode("utf-8", "surrogateescape")
    return result


def wire_name(path: Path) -> str:
    """A file name as an upload carries it: a name that is not UTF-8 goes as its bytes read as Latin-1."""
    return os.fsencode(path.name).decode("latin-1")


def env_with(**extra) -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **{k: str(v) for k, v in extra.items()}}


def real_subset(root: Path, per_class: int, start: int = 0) -> Path:
    """A Kaggle-layout folder of links into the shared training images: per_class of each class."""
    for cls in ("NORMAL", "PNEUMONIA"):
        files = sorted((CHEST_XRAY / "train" / cls).iterdir())
        step = max(1, len(files) // per_class)
        (root / "train" / cls).mkdir(parents=True, exist_ok=True)
        for f in files[start::step][:per_class]:
            (root / "train" / cls / f.name).symlink_to(f)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`cxr serve RUN` on 127.0.0.1 in its own process, as a user starts it."""

    def __init__(self, run: Path, env: dict, max_upload_mb: int = 20):
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cxr.cli", "-q", "serve", str(run), "--port", str(self.port),
             "--max-upload-mb", str(max_upload_mb)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"cxr serve exited: {self.process.stdout.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/api/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.5)
        raise RuntimeError("cxr serve did not answer within 120 s")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> str:
        self.process.terminate()
        try:
            out, _ = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        return out.decode("utf-8", "replace")
