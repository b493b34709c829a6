"""What the tests, the benchmarks and the reliability checks share: the shared data, `cxr` run in a
subprocess as a user runs it, a served run, and the round trip that every model kind must pass.

Nothing here is used by the product itself; it lives in the package so that tests/, bench/ and
reliability/ import one copy.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def shared_data() -> Path:
    """The read-only shared data folder: $CXR_SHARED_DATA, else ../shared/data beside the repository."""
    return Path(os.environ.get("CXR_SHARED_DATA") or ROOT / ".." / "shared" / "data").resolve()


CHEST_XRAY = shared_data() / "chest_xray"
FULLRES = shared_data() / "fullres_sample"


def run_cxr(*args, env=None, timeout=1800, quiet=True, cwd=None) -> subprocess.CompletedProcess:
    """`cxr ARGS` in a new process; output decoded leniently (file names may be any bytes)."""
    command = [sys.executable, "-m", "cxr.cli", *(["-q"] if quiet else []), *map(str, args)]
    result = subprocess.run(command, capture_output=True, timeout=timeout, env=env, cwd=cwd)
    result.stdout = result.stdout.decode("utf-8", "surrogateescape")
    result.stderr = result.stderr.decode("utf-8", "surrogateescape")
    return result


def run_cxr_commands(*commands: list, env=None, timeout=1800) -> tuple[list[int], subprocess.CompletedProcess]:
    """Several `cxr` commands one after another in one new process, as a user's script would run them: each
    reads what it needs from disk, only the imports are shared. (exit code of each command run, the process);
    the commands after a crash do not run."""
    script = ("import json, sys\nfrom cxr.cli import main\ncodes = []\n"
              "for command in json.loads(sys.argv[1]):\n    codes.append(main(['-q', *command]))\n"
              "    print('cxr-exit-codes', json.dumps(codes), flush=True)\n")
    result = subprocess.run([sys.executable, "-c", script, json.dumps([[str(a) for a in c] for c in commands])],
                            capture_output=True, timeout=timeout, env=env)
    result.stdout = result.stdout.decode("utf-8", "surrogateescape")
    result.stderr = result.stderr.decode("utf-8", "surrogateescape")
    marks = [line for line in result.stdout.splitlines() if line.startswith("cxr-exit-codes ")]
    return (json.loads(marks[-1].split(" ", 1)[1]) if marks else []), result


def real_subset_of(root: Path, per_class: int, start: int = 0) -> Path:
    """A Kaggle-layout folder (train/ only) of links to `per_class` shared training X-rays of each class."""
    for cls in ("NORMAL", "PNEUMONIA"):
        files = sorted((CHEST_XRAY / "train" / cls).iterdir())
        (root / "train" / cls).mkdir(parents=True, exist_ok=True)
        for f in files[start:: max(1, len(files) // per_class)][:per_class]:
            (root / "train" / cls / f.name).symlink_to(f)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`cxr serve RUN ARGS` on 127.0.0.1 in its own process, as a user starts it; a context manager."""

    def __init__(self, run: Path, *args, env: dict | None = None, timeout: float = 180):
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cxr.cli", "-q", "serve", str(run), "--port", str(self.port), *map(str, args)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"cxr serve {run} exited: {self.process.stdout.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/api/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"cxr serve {run} did not answer within {timeout:.0f} s")

    def predict(self, path: Path) -> dict:
        import httpx

        with open(path, "rb") as f:
            response = httpx.post(self.url + "/api/predict", files={"file": (path.name, f)}, timeout=120)
        response.raise_for_status()
        return response.json()

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

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.stop()


# --- the round trip: train a kind, then use it from new processes through every surface ---------------

ENSEMBLE = "ensemble"  # made by `cxr ensemble` from two runs, not by a builder
PARITY = 1e-4  # float32 Keras, ONNX, Ray and the service must agree this closely
FILES = [FULLRES / "NORMAL" / "NORMAL2-IM-1136-0001.jpeg", FULLRES / "NORMAL" / "IM-0217-0001.jpeg",
         FULLRES / "PNEUMONIA" / "person1110_bacteria_3051.jpeg"]  # full-size originals, both classes


def round_trip_kinds() -> list[str]:
    """Every model kind a user can make: the ensemble (first: the longest round trip, so that it does not end a
    test session alone), then the registry's builders."""
    from cxr.models import names

    return [ENSEMBLE] + names()


def tiny_training(kind: str, data: Path, out: Path, env=None, seed: int = 3, size: int | None = None) -> list:
    """The `cxr train` arguments for one short epoch of `kind` on `data`, by default at the smallest size the kind
    accepts (for vgg19, the weights file it reads is written first)."""
    size = size or (71 if kind == "xception" else 48)
    args = ["train", "--model", kind, "--data", data, "--out", out, "--epochs", 1, "--size", size,
            "--split", "pooled", "--seed", seed, "--split-seed", 3]
    if kind == "vgg19":  # no wheel ships VGG19 weights: a weights file the user gives, as offline users do
        weights = out.parent / "vgg19_notop.weights.h5"
        if not weights.exists():
            weights.parent.mkdir(parents=True, exist_ok=True)
            script = ("import sys, keras; keras.applications.VGG19(weights=None, include_top=False, "
                      "input_shape=(48, 48, 3)).save_weights(sys.argv[1])")
            subprocess.run([sys.executable, "-c", script, str(weights)], check=True, env=env, capture_output=True)
        args += ["--weights", weights]
    return args


def train_tiny(kind: str, data: Path, out: Path, env=None, seed: int = 3, size: int | None = None
               ) -> subprocess.CompletedProcess:
    """One short epoch of `kind` on `data` in a new process (tiny_training)."""
    return run_cxr(*tiny_training(kind, data, out, env, seed, size), env=env)


def make_run(kind: str, data: Path, work: Path, env=None) -> Path:
    """A trained run of `kind` under `work`; for ENSEMBLE, a cnn run at 96 px with a cnn_aug run at 48 px (a
    member at half the ensemble's size, as `make demo` pairs a 128 px CNN with a 64 px VGG16)."""
    run = work / kind
    if kind == ENSEMBLE:
        members = [work / "member_cnn", work / "member_cnn_aug"]
        for member, member_kind, size in zip(members, ("cnn", "cnn_aug"), (96, 48)):
            _check(train_tiny(member_kind, data, member, env, size=size), f"train {member_kind} (ensemble member)")
        _check(run_cxr("ensemble", *members, "--out", run, env=env), "cxr ensemble")
    else:
        _check(train_tiny(kind, data, run, env), f"train {kind}")
    return run


def _check(result: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    if result.returncode != 0:
        raise AssertionError(f"{what} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return result


def _probabilities(path: Path) -> dict:
    return {Path(row["path"]).name: row["probability"] for row in json.loads(path.read_text())}


def _agree(name: str, got: dict, expected: dict) -> str:
    if got.keys() != expected.keys():
        raise AssertionError(f"{name}: predicted {sorted(got)}, expected {sorted(expected)}")
    worst = max(abs(got[k] - expected[k]) for k in expected)
    if worst > PARITY:
        raise AssertionError(f"{name}: probabilities differ from Keras float32 by up to {worst:.2e}")
    return f"agrees within {worst:.1e}"


def use_run(run: Path, work: Path, env=None, files: list[Path] = FILES, labelled: Path = FULLRES, *,
            stress: bool = True, ray: bool = True, train: list | None = None) -> dict:
    """Every surface on a finished run, each in a new process; {step: what it showed}. Raises on a failure.
    `stress`, `ray`: False leaves out a step whose code does not depend on the kind and is tested elsewhere.
    `train`: the `cxr train` arguments that make the run first, in the commands' process, as a user's script
    trains and then uses a run (the service, in a process of its own, reads the run from disk)."""
    from cxr.runs.results import Metrics, Stress

    work.mkdir(parents=True, exist_ok=True)
    steps = {}
    metrics = work / Metrics.FILE
    keras_out, onnx_out, ray_out = work / "keras.json", work / "onnx.json", work / "ray.json"
    # The commands run one after another in one new process, as a user's script runs them (a process each costs
    # a TensorFlow start and a model load); each reads the run's files, and a model the process saved or loaded
    # already is not loaded twice (load_run). Ray and the service get processes of their own and load the run
    # from disk. That the ONNX path needs no TensorFlow is tested on its own (tests/test_predict.py).
    commands = {"cxr train": train} if train else {}
    commands |= {"cxr evaluate": ["evaluate", run, "--data", labelled, "--out", metrics],
                "cxr predict": ["predict", run, *files, "--precision", "float32", "--format", "json", "--out",
                                keras_out],
                "cxr export": ["export", run, "--force"],
                "cxr predict --engine onnx": ["predict", run, *files, "--engine", "onnx", "--format", "json", "--out",
                                              onnx_out]}
    if stress:
        commands["cxr stress"] = ["stress", run, "--images", 20, "--changes", "borders_cropped_10%"]
    codes, result = run_cxr_commands(*commands.values(), env=env)
    for (what, _), code in zip(commands.items(), codes + [None] * (len(commands) - len(codes))):
        if code != 0:
            raise AssertionError(f"{what} failed (exit {code}):\n{result.stderr[-3000:]}")
    steps["evaluate"] = f"n={Metrics.read(metrics).n}"
    expected = _probabilities(keras_out)
    steps["predict"] = f"{len(expected)} files"
    steps["onnx"] = _agree("onnx", _probabilities(onnx_out), expected)
    if stress:
        stressed = Stress.read_side(run)
        steps["stress"] = f"AUC change {stressed.perturbations['borders_cropped_10%'].roc_auc_change:+.3f}"
    if ray:
        _check(run_cxr("predict", run, *files, "--ray", "--workers", 1, "--precision", "float32", "--format",
                       "json", "--out", ray_out, env=env), "cxr predict --ray")
        steps["ray"] = _agree("ray", _probabilities(ray_out), expected)
    with Server(run, "--precision", "float32", env=env) as server:
        served = {files[0].name: server.predict(files[0])["probability"]}
    steps["serve"] = _agree("serve", served, {files[0].name: expected[files[0].name]})
    return steps
