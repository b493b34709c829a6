"""The peer: the seed's pipeline in idiomatic Keras (../shared/bench/peer_keras.py beside the shared data, which
$CXR_SHARED_DATA may place elsewhere), run in a venv of its own."""

import json
import subprocess
import sys
from pathlib import Path

from cxr.testing import shared_data

ROOT = Path(__file__).resolve().parents[1]
PEER = shared_data().parent / "bench" / "peer_keras.py"
PEER_VENV = ROOT / ".venv-peer"
PEER_PACKAGES = ["tensorflow-cpu==2.21.0", "keras==3.15.1"]  # the same versions cxr uses: a fair comparison


def ensure_peer_venv() -> Path:
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEER_PACKAGES], check=True)
    return python


def peer_runs(train_dir: Path, repeats: int, epochs: int, bf16: bool = False) -> list[dict]:
    """The peer as published, or with its one-line mixed-bfloat16 speed-up (--bf16): one result per run."""
    python = ensure_peer_venv()
    runs = []
    for _ in range(repeats):
        result = subprocess.run([str(python), str(PEER), str(train_dir), "--epochs", str(epochs),
                                 *(["--bf16"] if bf16 else [])], capture_output=True, text=True, check=True)
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    return runs
