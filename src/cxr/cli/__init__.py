"""`cxr` command line, declared as a table (COMMANDS): every command, its help, and its arguments.

Several commands joined by `--then` run one after another in one process, so that the models, compiled graphs and
decoded images one step loaded serve the next (`make demo` runs everything after training so). An argument `@FILE`
stands for the lines of FILE, read when its step starts: `evidence @reports/demo/best_run.txt` after the `compare`
that writes it.
"""

import argparse
import dataclasses
import itertools
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


def add_training_settings(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    """One flag per TrainConfig field that declares one (cxr.runs.settings.setting), its default the field's;
    `only`: these fields alone."""
    for f in dataclasses.fields(TrainConfig):
        if "help" not in f.metadata or (only is not None and f.name not in only):
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


def add_audit_preprocessing(parser: argparse.ArgumentParser) -> None:
    """Training's preprocessing flags, defaulting to the robust preprocessing the audit probes with."""
    from cxr.data.preprocess import ROBUST

    add_training_settings(parser, only=("size", "resize", "intensity", "border"))
    parser.set_defaults(size=ROBUST.size, resize=ROBUST.resize, intensity=ROBUST.intensity, border=ROBUST.border)


def arg(*flags, **options) -> tuple:
    return flags, options


def out(help: str, **options) -> tuple:
    return arg("--out", type=Path, help=help, **options)


def force(help: str) -> tuple:
    return arg("--force", action="store_true", help=help)


# The arguments several commands share, declared once.
RUN = arg("run", type=Path, help="a run folder (made by cxr train or cxr ensemble)")
RUNS = arg("runs", nargs="+", type=Path, metavar="RUN")
LABELLED = "a labelled folder: NORMAL/ and PNEUMONIA/, or a Kaggle layout"
THRESHOLD = arg("--threshold", type=float, help=OWN_THRESHOLD)
ENGINE = arg("--engine", choices=("keras", "onnx"), default="keras")
PRECISION_ARG = arg("--precision", choices=PRECISIONS, default="auto", help=PRECISION)
RAY_ADDRESS = "join this Ray cluster, e.g. ray://head:10001 (default: $RAY_ADDRESS, else a local Ray)"

# name: (help, what runs it, its arguments: arg(...) or a function that adds some to the parser)
COMMANDS = {
    "train": ("train a model, choose its threshold on validation, evaluate on test", cmd_train, [
        add_training_settings,
        arg("--resume", type=Path, metavar="RUN",
            help="continue a killed run from its last epoch (settings come from its config.json)")]),
    "evaluate": ("metrics and figures on the run's test split or a labelled folder", cmd_evaluate, [
        RUN, arg("--data", type=Path, help=LABELLED), out("metrics file (default RUN/metrics.json)"), THRESHOLD,
        PRECISION_ARG]),
    "compare": ("comparison report (Markdown + self-contained HTML) of several runs", cmd_compare, [
        RUNS, out("report folder, e.g. reports/seed", required=True),
        arg("--serve-from-scratch", action="store_true", help="let a run trained from scratch be chosen to serve "
            "(by default only runs built from pretrained networks are)")]),
    "predict": ("P(pneumonia) for files, folders and globs (JPEG, PNG, DICOM); exit status 3: some inputs skipped",
                cmd_predict, [
        RUN, arg("paths", nargs="+", help="files, folders (recursive) or quoted globs"),
        arg("--format", choices=["csv", "json"], default="csv"), out("write here instead of standard output"),
        force("replace an existing --out file"), THRESHOLD, ENGINE, PRECISION_ARG,
        arg("--explain", type=Path, metavar="OUT_DIR", help="write an evidence map PNG (HiResCAM) per image here"),
        arg("--ray", action="store_true", help="decode and score on Ray (a local Ray unless --ray-address is given)"),
        arg("--ray-address", help=RAY_ADDRESS),
        arg("--workers", type=int, default=2, help="with --ray: scoring actors, one model each (default 2)")]),
    "guard": ("fit the two out-of-distribution guards (pixels, model features) of a run again", cmd_guard, [RUN]),
    "sweep": ("train many configurations on Ray Tune (ASHA), ranked on validation", cmd_sweep, [
        arg("config", type=Path, help="sweep file, e.g. examples/sweep.toml"),
        out("sweep folder; run again to resume it", required=True), arg("--ray-address", help=RAY_ADDRESS)]),
    "audit": ("data inventory and shortcut probe (can acquisition cues predict the label?)", cmd_audit, [
        arg("data", nargs="?", type=Path, help="Kaggle-layout folder (default: $CXR_DATA or the shared data)"),
        out("report folder (default reports/audit)", default=Path("reports/audit")),
        add_audit_preprocessing]),
    "evidence": ("where a run's evidence maps put their weight (lungs, above, below, beside, border), per class "
                 "and per call, over validation or a labelled folder (evidence.json)", cmd_evidence, [
        RUN, arg("--data", type=Path, help=LABELLED + ", instead of the validation split"),
        out("where to write (default: the run folder)")]),
    "site-check": ("is a folder of X-rays like the run's training batch? batch tests on the model's features and "
                   "outputs, guard rate, acquisition statistics, estimated accuracy, a verdict (same, shifted, "
                   "different): site_check.json, site_check.md", cmd_site_check, [
        arg("folder", type=Path, nargs="?", help="a folder of X-rays (labels, where NORMAL/PNEUMONIA folders "
            "give them, are only reported beside the estimate)"),
        arg("--split", choices=["test", "val", "train"], help="instead of a folder: this side of the run's own "
            "split (the carved test split must come back `same`)"),
        arg("--against", type=Path, required=True, metavar="RUN", help="the run to check the folder against"),
        out("where to write (default: RUN/site_checks/FOLDER_NAME)")]),
    "stress": ("a run's test and validation splits under acquisition-like changes (stress.json, stress_val.json)",
               cmd_stress, [
        RUNS, arg("--images", type=int, metavar="N",
                  help="at most N images of each side, drawn within each class (default: all)"),
        PRECISION_ARG, ENGINE,
        arg("--changes", metavar="NAME,...", help="only these changes (default: all; names in stress.json; "
            "`selection`: the conditions the choice of the served run reads)")]),
    "ensemble": ("mean logit of several runs (+ test-time augmentation) as a new run", cmd_ensemble, [
        arg("runs", nargs="+", type=Path, help="runs with the same preprocessing and split"),
        out("new run folder, e.g. runs/ensemble", required=True),
        arg("--no-tta", action="store_true", help="only the images as they are (no zoomed/widened views)")]),
    "export": ("export the model (ONNX) with a metadata file", cmd_export, [
        RUN, arg("--format", choices=["onnx"], default="onnx"), force("replace an existing export")]),
    "serve": ("web page and JSON API around a trained run", cmd_serve, [
        RUN, arg("--host", default="127.0.0.1"), arg("--port", type=int, default=8000), ENGINE, PRECISION_ARG,
        arg("--max-upload-mb", type=int, default=20)]),
}


def parser() -> argparse.ArgumentParser:
    from cxr import __version__

    p = argparse.ArgumentParser(prog="cxr", description="Pneumonia detection on pediatric chest X-rays; join "
                                "commands with --then to run them in one process", fromfile_prefix_chars="@")
    p.add_argument("--version", action="version", version=f"cxr {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and results")
    sub = p.add_subparsers(dest="command", required=True)
    for name, (help, func, arguments) in COMMANDS.items():
        command = sub.add_parser(name, help=help, description=help)
        for argument in arguments:
            if callable(argument):
                argument(command)
            else:
                flags, options = argument
                command.add_argument(*flags, **options)
        command.set_defaults(func=func)
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


THEN = "--then"


def _steps(argv: list[str]) -> list[list[str]]:
    """The command lines of `cxr [-q] A ... --then B ... --then C ...`, each with the options given before A."""
    pieces = [[]]
    for word in argv:
        if word == THEN:
            pieces.append([])
        else:
            pieces[-1].append(word)
    options = list(itertools.takewhile(lambda word: word.startswith("-"), pieces[0]))
    return [pieces[0], *([*options, *piece] for piece in pieces[1:])]


def main(argv=None) -> int:
    steps = _steps(sys.argv[1:] if argv is None else list(argv))
    for step in steps:
        if len(steps) > 1:  # what runs now, as make would echo it (bench/run.py times the steps by these lines)
            print("cxr " + " ".join(step), flush=True)
        status = _run(step)
        if status:
            return status
    return 0


def _run(argv: list[str]) -> int:
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
