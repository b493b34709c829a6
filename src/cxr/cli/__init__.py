"""`cxr` command line: train, evaluate, compare, predict, export, serve."""

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

# Before anything imports TensorFlow: its C++ start-up lines (oneDNN, CPU features) are noise to a user.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cxr.cli.commands import (  # noqa: E402
    cmd_audit,
    cmd_compare,
    cmd_ensemble,
    cmd_evaluate,
    cmd_evidence,
    cmd_export,
    cmd_guard,
    cmd_predict,
    cmd_serve,
    cmd_site_check,
    cmd_stress,
    cmd_sweep,
    cmd_train,
)
from cxr.errors import CxrError  # noqa: E402
from cxr.runs.settings import PRECISIONS, TrainConfig  # noqa: E402

PRECISION = ("Keras engine: auto (default) computes in mixed bfloat16 where the CPU has it natively (3-6x faster, "
             "probabilities within about 1e-3 of float32), else float32; float32 gives the same numbers on every "
             "CPU and as the ONNX export")




OWN_THRESHOLD = "decision threshold to use instead of the run's own (chosen on validation; see its MODEL_CARD.md)"


def add_training_settings(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field that declares one (cxr.runs.settings.setting), its default the field's."""
    for f in dataclasses.fields(TrainConfig):
        if "help" not in f.metadata:
            continue
        options = {k: v for k, v in f.metadata.items() if k not in ("flag", "path", "cli_default")}
        flag = f.metadata["flag"] or "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            parser.add_argument(flag, dest=f.name, action="store_false" if f.default else "store_true", **options)
            continue
        if f.metadata.get("path"):  # no default: argparse would turn "" into Path(".")
            parser.add_argument(flag, dest=f.name, type=Path, **options)
            continue
        kind = str if f.default is None else type(f.default)
        parser.add_argument(flag, dest=f.name, type=kind, default=f.metadata.get("cli_default", f.default), **options)


ENGINES = ("keras", "onnx")


def _precision(command) -> None:
    command.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION)


def _engine(command) -> None:
    command.add_argument("--engine", choices=ENGINES, default="keras")


def parser() -> argparse.ArgumentParser:
    from cxr import __version__
    from cxr.data.preprocess import BORDER_MODES, INTENSITY_MODES, RESIZE_MODES, ROBUST

    p = argparse.ArgumentParser(prog="cxr", description="Pneumonia detection on pediatric chest X-rays.")
    p.add_argument("--version", action="version", version=f"cxr {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and results")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model, choose its threshold on validation, evaluate on test")
    add_training_settings(t)
    t.add_argument("--resume", type=Path, metavar="RUN",
                   help="continue a killed run from its last epoch (settings come from its config.json)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="metrics and figures on the run's test split or a labelled folder")
    e.add_argument("run", type=Path)
    e.add_argument("--data", type=Path, help="folder with NORMAL/ and PNEUMONIA/ (or a Kaggle layout)")
    e.add_argument("--out", type=Path, help="metrics file (default RUN/metrics.json)")
    e.add_argument("--threshold", type=float, help=OWN_THRESHOLD)
    _precision(e)
    e.set_defaults(func=cmd_evaluate)

    c = sub.add_parser("compare", help="comparison report (Markdown + self-contained HTML) of several runs")
    c.add_argument("runs", nargs="+")
    c.add_argument("--out", required=True, help="report folder, e.g. reports/seed")
    c.add_argument("--serve-from-scratch", action="store_true",
                   help="let a run trained from scratch be chosen to serve (by default only runs built from "
                   "pretrained networks are)")
    c.set_defaults(func=cmd_compare)

    pr = sub.add_parser("predict", help="P(pneumonia) for files, folders and globs (JPEG, PNG, DICOM)",
                        epilog="exit status: 0 all predicted, 3 some inputs skipped")
    pr.add_argument("run", type=Path)
    pr.add_argument("paths", nargs="+", help="files, folders (recursive) or quoted globs")
    pr.add_argument("--format", choices=["csv", "json"], default="csv")
    pr.add_argument("--out", type=Path, help="write here instead of standard output")
    pr.add_argument("--force", action="store_true", help="replace an existing --out file")
    pr.add_argument("--threshold", type=float, help=OWN_THRESHOLD)
    _engine(pr)
    _precision(pr)
    pr.add_argument("--explain", type=Path, metavar="OUT_DIR", help="write an evidence map PNG per image here")
    pr.add_argument("--ray", action="store_true",
                    help="decode and score on Ray (a local Ray on this machine unless --ray-address is given)")
    pr.add_argument("--ray-address", help="join this Ray cluster, e.g. ray://head:10001 (default: $RAY_ADDRESS)")
    pr.add_argument("--workers", type=int, default=2, help="with --ray: scoring actors, one model each (default 2)")
    pr.set_defaults(func=cmd_predict)

    g = sub.add_parser("guard", help="fit the two out-of-distribution guards (pixels, model features) of a run again")
    g.add_argument("run", type=Path)
    g.set_defaults(func=cmd_guard)

    sw = sub.add_parser("sweep", help="train many configurations on Ray Tune (ASHA), ranked on validation")
    sw.add_argument("config", type=Path, help="sweep file, e.g. examples/sweep.toml")
    sw.add_argument("--out", type=Path, required=True, help="sweep folder; run again to resume it")
    sw.add_argument("--ray-address", help="join this Ray cluster (default: a local Ray on this machine)")
    sw.set_defaults(func=cmd_sweep)

    a = sub.add_parser("audit", help="data inventory and shortcut probe (can acquisition cues predict the label?)")
    a.add_argument("data", nargs="?", type=Path, help="Kaggle-layout folder (default: $CXR_DATA or the shared data)")
    a.add_argument("--out", default="reports/audit", help="report folder (default reports/audit)")
    a.add_argument("--size", type=int, default=128)
    a.add_argument("--resize", choices=RESIZE_MODES, default=ROBUST.resize)
    a.add_argument("--intensity", choices=INTENSITY_MODES, default=ROBUST.intensity)
    a.add_argument("--border", choices=BORDER_MODES, default=ROBUST.border)
    a.set_defaults(func=cmd_audit)

    ev = sub.add_parser("evidence", help="where a run's evidence maps put their weight (lungs, above, below, beside, "
                        "border), per class and per call, over validation or a labelled folder (evidence.json)")
    ev.add_argument("run", type=Path)
    ev.add_argument("--data", type=Path, help="a labelled folder (Kaggle layout) instead of the validation split")
    ev.add_argument("--out", type=Path, help="where to write (default: the run folder)")
    ev.set_defaults(func=cmd_evidence)

    sc = sub.add_parser("site-check", help="is a folder of X-rays like the run's training batch? batch tests on "
                        "the model's features and outputs, guard rate, acquisition statistics, estimated accuracy, "
                        "a verdict (same, shifted, different): site_check.json, site_check.md")
    sc.add_argument("folder", type=Path, nargs="?", help="a folder of X-rays (labels, where NORMAL/PNEUMONIA folders "
                    "give them, are only reported beside the estimate)")
    sc.add_argument("--split", choices=["test", "val", "train"], help="instead of a folder: this side of the run's "
                    "own split (the carved test split must come back `same`)")
    sc.add_argument("--against", type=Path, required=True, metavar="RUN", help="the run to check the folder against")
    sc.add_argument("--out", type=Path, help="where to write (default: RUN/site_checks/FOLDER_NAME)")
    sc.set_defaults(func=cmd_site_check)

    st = sub.add_parser("stress", help="a run's test and validation splits under acquisition-like changes "
                        "(stress.json, stress_val.json)")
    st.add_argument("runs", nargs="+", type=Path, metavar="RUN")
    st.add_argument("--images", type=int, metavar="N",
                    help="at most N images of each side, drawn within each class (default: all)")
    _precision(st)
    _engine(st)
    st.add_argument("--changes", metavar="NAME,...", help="only these changes (default: all; names in stress.json; "
                    "`selection`: the conditions the choice of the served run reads)")
    st.set_defaults(func=cmd_stress)

    en = sub.add_parser("ensemble", help="mean logit of several runs (+ test-time augmentation) as a new run")
    en.add_argument("runs", nargs="+", type=Path, help="runs with the same preprocessing and split")
    en.add_argument("--out", type=Path, required=True, help="new run folder, e.g. runs/ensemble")
    en.add_argument("--no-tta", action="store_true", help="only the images as they are (no zoomed/widened views)")
    en.set_defaults(func=cmd_ensemble)

    ex = sub.add_parser("export", help="export the model (ONNX) with a metadata file")
    ex.add_argument("run", type=Path)
    ex.add_argument("--format", choices=["onnx"], default="onnx")
    ex.add_argument("--force", action="store_true", help="replace an existing export")
    ex.set_defaults(func=cmd_export)

    sv = sub.add_parser("serve", help="web page and JSON API around a trained run")
    sv.add_argument("run", type=Path)
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    _engine(sv)
    _precision(sv)
    sv.add_argument("--max-upload-mb", type=int, default=20)
    sv.set_defaults(func=cmd_serve)
    return p


def _import_tensorflow_silently() -> None:
    """TensorFlow writes its start-up notices (oneDNN) from C++ before its log level applies (an open
    upstream problem: TF_CPP_MIN_LOG_LEVEL does not reach them), so `-q` imports it with stderr closed."""
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _uses_tensorflow(args) -> bool:
    """The ONNX engine and the sweep driver never import TensorFlow in this process (the audit does: the framing
    augmentation it probes runs in TensorFlow)."""
    return args.command != "sweep" and getattr(args, "engine", "keras") == "keras"


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.quiet and _uses_tensorflow(args):
        _import_tensorflow_silently()
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s",
                        stream=sys.stderr)
    try:
        result = args.func(args)
    except CxrError as exc:  # an expected failure: one line naming the file or setting, not a traceback
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)
