"""Every kind of bad file through the three surfaces a user has: `cxr predict`, `cxr train`, POST /api/predict.

A kind passes a surface when it ends as expected: a clear error naming the file (one line, no traceback),
or an ordinary prediction for unusual but valid images; good files beside it are still processed.
A crash is an uncaught exception, a 5xx, or a process that dies.
"""

import csv
import shutil
from pathlib import Path

from bad_files import BadFile, write_bad_files
from common import CHEST_XRAY, TRACEBACK, Server, cxr, wire_name

PREDICT_SKIPPED_EXIT = 3  # documented: some inputs skipped, the rest predicted


def _named_once(stderr: str, path: Path) -> bool:
    lines = [line for line in stderr.splitlines() if str(path) in line]
    return len(lines) == 1 and "skipped" in lines[0]


def through_predict(run: Path, bad: list[BadFile], good: list[Path], folder: Path, env) -> dict:
    result = cxr("predict", run, folder, *good, env=env)
    rows = {row["path"] for row in csv.DictReader(result.stdout.splitlines())}
    outcomes = {}
    for item in bad:
        errored, predicted = _named_once(result.stderr, item.path), str(item.path) in rows
        outcomes[item.kind] = _judge(item.expect, errored, predicted)
    sane = result.returncode == PREDICT_SKIPPED_EXIT and TRACEBACK not in result.stderr
    sane = sane and all(str(g) in rows for g in good)
    return {"outcomes": outcomes, "process_ok": sane, "exit_code": result.returncode,
            "stderr_tail": result.stderr[-1500:] if not sane else ""}


def through_train(bad: list[BadFile], good_root: Path, data: Path, out: Path, env) -> dict:
    """The bad files mixed into a data folder of good images, half under each class."""
    shutil.copytree(good_root, data, symlinks=True)
    placed = {}
    for i, item in enumerate(bad):
        target = data / "train" / ("NORMAL", "PNEUMONIA")[i % 2] / item.path.name
        shutil.move(item.path, target) if item.path.is_symlink() else shutil.copy2(item.path, target)
        placed[item.kind] = target
    result = cxr("train", "--model", "cnn", "--data", data, "--out", out, "--size", 64, "--epochs", 1,
                 "--split", "pooled", "--seed", 1, env=env)
    trained = set()
    if (out / "split.csv").exists():
        with open(out / "split.csv", newline="", encoding="utf-8", errors="surrogateescape") as f:
            trained = {row["file"] for row in csv.DictReader(f)}
    outcomes = {item.kind: _judge(item.expect, _named_once(result.stderr, placed[item.kind]),
                                  str(placed[item.kind]) in trained) for item in bad}
    sane = result.returncode == 0 and TRACEBACK not in result.stderr and len(trained) > 0
    return {"outcomes": outcomes, "process_ok": sane, "exit_code": result.returncode,
            "stderr_tail": result.stderr[-1500:] if not sane else ""}


def through_serve(run: Path, bad: list[BadFile], env) -> dict:
    import httpx

    server = Server(run, env=env)
    outcomes, statuses = {}, {}
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            for item in bad:
                if not item.http:
                    continue
                name = wire_name(item.path)
                try:
                    response = client.post("/api/predict", files={"file": (name, item.path.read_bytes())})
                except httpx.HTTPError as exc:
                    outcomes[item.kind], statuses[item.kind] = "crash", f"no answer: {exc}"
                    continue
                statuses[item.kind] = response.status_code
                body = response.json()
                errored = 400 <= response.status_code < 500 and name in body.get("error", "")
                outcomes[item.kind] = ("crash" if response.status_code >= 500 else
                                       _judge(item.expect, errored, response.status_code == 200))
    finally:
        alive = server.alive()
        log = server.stop()
    return {"outcomes": outcomes, "process_ok": alive and TRACEBACK not in log, "statuses": statuses,
            "log_tail": log[-1500:] if TRACEBACK in log else ""}


def _judge(expect: str, errored: bool, predicted: bool) -> str:
    """clear_error / accepted when the outcome is what this kind should give; otherwise wrong or crash."""
    if errored and not predicted and expect in ("error", "any"):
        return "clear_error"
    if predicted and not errored and expect in ("ok", "any"):
        return "accepted"
    return "wrong" if (errored or predicted) else "crash"


def check(run: Path, work: Path, good_root: Path, env) -> dict:
    source = CHEST_XRAY / "train" / "NORMAL" / "IM-0115-0001.jpeg"
    good = sorted((good_root / "train" / "PNEUMONIA").iterdir())[:3]
    surfaces = {
        "predict": through_predict(run, write_bad_files(work / "predict", source), good, work / "predict", env),
        "serve": through_serve(run, write_bad_files(work / "serve", source), env),
        "train": through_train(write_bad_files(work / "train_src", source), good_root, work / "train_data",
                               work / "train_run", env),
    }
    outcomes = [o for s in surfaces.values() for o in s["outcomes"].values()]
    kinds = {kind for s in surfaces.values() for kind in s["outcomes"]}
    return {
        "kinds": len(kinds),
        "tried": len(outcomes),
        "clear_errors": outcomes.count("clear_error"),
        "accepted": outcomes.count("accepted"),
        "wrong": outcomes.count("wrong"),
        "crashes": outcomes.count("crash") + sum(not s["process_ok"] for s in surfaces.values()),
        "surfaces": list(surfaces),
        "detail": surfaces,
        "passed": all(o in ("clear_error", "accepted") for o in outcomes)
        and all(s["process_ok"] for s in surfaces.values()),
    }
