"""`cxr` command line: train, evaluate, compare, predict, export, serve."""

import argparse
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the output


PRECISION = ("Keras engine: float32 (exact, default) or mixed_bfloat16 (about 3x faster on CPUs with bfloat16 "
             "instructions, probabilities within about 1e-3); auto picks by the CPU")


def _headline(report: dict) -> str:
    ci = report["ci95"]
    return (
        f"n={report['n']}  threshold={report['threshold']:.3f}  "
        f"accuracy={report['accuracy']:.3f} [{ci['accuracy'][0]:.3f}-{ci['accuracy'][1]:.3f}]  "
        f"sensitivity={report['sensitivity']:.3f}  specificity={report['specificity']:.3f}  "
        f"f1={report['f1']:.3f}  roc_auc={report['roc_auc']:.3f} [{ci['roc_auc'][0]:.3f}-{ci['roc_auc'][1]:.3f}]"
    )


def cmd_train(args) -> None:
    from cxr.config import TrainConfig, config_from_run
    from cxr.data.layout import default_data_dir
    from cxr.evaluate import evaluate_run
    from cxr.run import read_json
    from cxr.train import train

    if args.resume:
        cfg = config_from_run(args.resume)
        cfg.out = str(args.resume)
    else:
        if not args.out:
            raise SystemExit("cxr train: give --out runs/NAME (or --resume runs/NAME)")
        cfg = TrainConfig(
            model=args.model, data=str(args.data or default_data_dir()), out=str(args.out), split=args.split,
            size=args.size, resize=args.resize, intensity=args.intensity, border=args.border,
            epochs=args.epochs, patience=args.patience, seed=args.seed,
            split_seed=args.seed if args.split_seed is None else args.split_seed,
            batch_size=args.batch_size, learning_rate=args.lr, label_smoothing=args.label_smoothing,
            class_weight=args.class_weight,
            precision=args.precision, fine_tune=args.fine_tune, fine_tune_epochs=args.fine_tune_epochs,
            weights=args.weights, devices=args.devices,
        )
    run_dir = train(cfg, resume=bool(args.resume))
    report = evaluate_run(run_dir)
    training = read_json(run_dir / "training.json")
    print(f"split: {training['split_note']}; {training['images']}")
    print(f"{cfg.model}: {training['epochs_run']} epochs, {training['epoch_seconds_mean']:.1f} s/epoch, "
          f"{training['train_seconds']:.0f} s training")
    print(f"test: {_headline(report)}")
    if training["skipped"]:
        print(f"skipped {len(training['skipped'])} unreadable files (listed in {run_dir / 'training.json'})")
    print(f"run folder: {run_dir}  (figures in {run_dir / 'figures'})")


def cmd_evaluate(args) -> None:
    from cxr.evaluate import evaluate_run

    report = evaluate_run(args.run, data=args.data, out=args.out)
    print(_headline(report))
    if report["skipped"]:
        print(f"skipped {len(report['skipped'])} unreadable files")


def cmd_compare(args) -> None:
    from cxr.report import compare

    report = compare([Path(r) for r in args.runs], Path(args.out))
    print((report.parent / "table.md").read_text())
    print(f"report: {report}")


def cmd_predict(args) -> int:
    from cxr.predict import SKIPPED_EXIT_CODE, RowWriter, expand_inputs, open_output, predict_batches

    if args.out and args.out.exists() and not args.force:
        raise SystemExit(f"{args.out} already exists; choose another --out or pass --force")
    if args.ray and args.explain:
        raise SystemExit("--explain runs on the local path only; drop --ray to write explanations")
    files, skipped = expand_inputs(args.paths)
    for path, reason in skipped:
        logging.getLogger("cxr.predict").warning("skipped %s: %s", path, reason)
    if not (args.run / "ood.npz").exists():
        print(f"note: {args.run} has no out-of-distribution guard (ood columns empty); `cxr guard {args.run}` "
              "fits one", file=sys.stderr)
    if args.ray:
        from cxr.ray_predict import ray_batches
        from cxr.run import run_preprocessing

        batches = ray_batches(args.run, files, run_preprocessing(args.run, args.engine), args.engine,
                              args.precision, args.workers, args.ray_address)
    else:
        from cxr.engines import Predictor

        batches = predict_batches(Predictor(args.run, engine=args.engine, precision=args.precision), files,
                                  args.explain)
    with open_output(args.out) as stream:
        writer = RowWriter(stream, args.format)
        for rows, bad in batches:
            writer.rows(rows)
            skipped += bad
        writer.close()
    if args.out:
        print(f"{writer.count} predictions written to {args.out}", file=sys.stderr)
    if skipped:
        print(f"{len(skipped)} inputs skipped", file=sys.stderr)
        return SKIPPED_EXIT_CODE
    return 0


def cmd_guard(args) -> None:
    from cxr.data.dataset import load_part
    from cxr.data.preprocess import Preprocessing
    from cxr.data.split import read_split_csv
    from cxr.ood import fit_for_run
    from cxr.run import INFO_FILE, read_json, write_json

    info = read_json(args.run / INFO_FILE)
    split, prep = read_split_csv(args.run / "split.csv"), Preprocessing.from_dict(info)
    train, val = (load_part(split.part(side), prep)[0] for side in ("train", "val"))
    info["ood"] = fit_for_run(args.run, train.images, val.images)
    write_json(args.run / INFO_FILE, info)
    print(f"out-of-distribution guard fitted on {len(train.labels)} training X-rays: cut-off "
          f"{info['ood']['cutoff']} ({info['ood']['rule']}); written to {args.run / info['ood']['file']}")


def cmd_sweep(args) -> None:
    from cxr.sweep import run_sweep

    report = run_sweep(args.config, args.out, args.ray_address)
    print(report.read_text())
    print(f"report: {report}; trial runs in {args.out / 'trials'}")


def cmd_audit(args) -> int:
    from cxr.audit import audit
    from cxr.data.layout import default_data_dir
    from cxr.data.preprocess import Preprocessing

    prep = Preprocessing(args.size, args.resize, args.intensity, args.border)
    audit(Path(args.data or default_data_dir()), Path(args.out), prep)
    print((Path(args.out) / "audit.md").read_text())
    print(f"audit written to {args.out} (audit.json, audit.md, audit.png)")
    return 0


def cmd_stress(args) -> None:
    from cxr.stress import stress_run, stress_table

    result = stress_run(args.run, engine=args.engine)
    print(stress_table(result))
    print(f"worst photometric change of ROC AUC: {result['worst_photometric_auc_change']:+.3f}; "
          f"shortcut probe on the run's input: {result['shortcut_probe_auc']:.3f}")
    print(f"written: {Path(args.run) / 'stress.json'}, {Path(args.run) / 'figures' / 'stress.png'}")


def cmd_ensemble(args) -> None:
    from cxr.ensemble import make_ensemble
    from cxr.evaluate import evaluate_run

    run_dir = make_ensemble(args.runs, args.out, tta=not args.no_tta)
    print(f"test: {_headline(evaluate_run(run_dir))}")
    print(f"run folder: {run_dir}")


def cmd_export(args) -> None:
    from cxr.export import export_onnx

    print(f"wrote {export_onnx(args.run, force=args.force)} (metadata beside it)")


def cmd_serve(args) -> None:
    try:
        import uvicorn

        from cxr.serve.app import create_app
    except ImportError:
        raise SystemExit("serving needs the serve extra: pip install 'cxr[serve]'") from None
    app = create_app(args.run, engine=args.engine, precision=args.precision, max_upload=args.max_upload_mb * 2**20)
    print(f"serving {args.run} on http://{args.host}:{args.port}  (API docs: /docs)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def parser() -> argparse.ArgumentParser:
    from cxr import __version__
    from cxr.data.preprocess import BORDER_MODES, INTENSITY_MODES, RESIZE_MODES, ROBUST

    p = argparse.ArgumentParser(prog="cxr", description="Pneumonia detection on pediatric chest X-rays.")
    p.add_argument("--version", action="version", version=f"cxr {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and results")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model, choose its threshold on validation, evaluate on test")
    t.add_argument("--model", default="cnn", help="cnn, cnn_aug, vgg16, vgg19, xception")
    t.add_argument("--data", type=Path, help="Kaggle-layout folder (default: $CXR_DATA or the shared data)")
    t.add_argument("--out", type=Path, help="new run folder, e.g. runs/cnn")
    t.add_argument("--resume", type=Path, metavar="RUN",
                   help="continue a killed run from its last epoch (settings come from its config.json)")
    t.add_argument("--split", choices=["official", "pooled"], default="official")
    t.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    t.add_argument("--resize", choices=RESIZE_MODES, default="squash",
                   help="how a non-square original becomes a square: squash (default), crop the centre, pad")
    t.add_argument("--intensity", choices=INTENSITY_MODES, default="none",
                   help="per-image intensity normalisation: none, equalize (histogram), clahe")
    t.add_argument("--border", choices=BORDER_MODES, default="none",
                   help="crop: cut away black collimation borders before resizing")
    t.add_argument("--epochs", type=int, default=100, help="most epochs (early stopping usually ends sooner)")
    t.add_argument("--patience", type=int, default=20, help="early-stopping patience on validation loss")
    t.add_argument("--seed", type=int, default=42, help="random seed of weights, augmentation and the split")
    t.add_argument("--split-seed", type=int, help="seed of the patient split alone (default: --seed)")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=1e-3, help="learning rate (Adam)")
    t.add_argument("--label-smoothing", type=float, default=0.0, help="e.g. 0.1: softer targets, calmer logits")
    t.add_argument("--class-weight", choices=["none", "balanced"], default="none")
    t.add_argument("--precision", choices=["auto", "float32", "mixed_bfloat16"], default="auto",
                   help="auto: mixed_bfloat16 where the CPU has bfloat16 instructions, else float32")
    t.add_argument("--fine-tune", type=int, default=0, metavar="N",
                   help="transfer models: then unfreeze the last N conv layers and train on at a low rate")
    t.add_argument("--fine-tune-epochs", type=int, default=10, help="epochs of fine-tuning (default 10)")
    t.add_argument("--weights", help="pretrained weights file for the base (needed offline for vgg19)")
    t.add_argument("--devices", default="1", metavar="N|all",
                   help="train on N devices with MirroredStrategy: the GPUs, or N logical CPU devices (default 1)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="metrics and figures on the run's test split or a labelled folder")
    e.add_argument("run", type=Path)
    e.add_argument("--data", type=Path, help="folder with NORMAL/ and PNEUMONIA/ (or a Kaggle layout)")
    e.add_argument("--out", type=Path, help="metrics file (default RUN/metrics.json)")
    e.set_defaults(func=cmd_evaluate)

    c = sub.add_parser("compare", help="comparison report (Markdown + self-contained HTML) of several runs")
    c.add_argument("runs", nargs="+")
    c.add_argument("--out", required=True, help="report folder, e.g. reports/seed")
    c.set_defaults(func=cmd_compare)

    pr = sub.add_parser("predict", help="P(pneumonia) for files, folders and globs (JPEG, PNG, DICOM)",
                        epilog="exit status: 0 all predicted, 3 some inputs skipped")
    pr.add_argument("run", type=Path)
    pr.add_argument("paths", nargs="+", help="files, folders (recursive) or quoted globs")
    pr.add_argument("--format", choices=["csv", "json"], default="csv")
    pr.add_argument("--out", type=Path, help="write here instead of standard output")
    pr.add_argument("--force", action="store_true", help="replace an existing --out file")
    pr.add_argument("--engine", choices=["keras", "onnx"], default="keras")
    pr.add_argument("--precision", choices=["float32", "mixed_bfloat16", "auto"], default="float32", help=PRECISION)
    pr.add_argument("--explain", type=Path, metavar="OUT_DIR", help="write a Grad-CAM PNG per image here")
    pr.add_argument("--ray", action="store_true",
                    help="decode and score on Ray (a local Ray on this machine unless --ray-address is given)")
    pr.add_argument("--ray-address", help="join this Ray cluster, e.g. ray://head:10001 (default: $RAY_ADDRESS)")
    pr.add_argument("--workers", type=int, default=2, help="with --ray: scoring actors, one model each (default 2)")
    pr.set_defaults(func=cmd_predict)

    g = sub.add_parser("guard", help="fit the out-of-distribution guard of a run saved without one")
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

    st = sub.add_parser("stress", help="the run's test split under acquisition-like changes (stress.json)")
    st.add_argument("run", type=Path)
    st.add_argument("--engine", choices=["keras", "onnx"], default="keras")
    st.set_defaults(func=cmd_stress)

    en = sub.add_parser("ensemble", help="mean probability of several runs (+ test-time augmentation) as a new run")
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
    sv.add_argument("--engine", choices=["keras", "onnx"], default="keras")
    sv.add_argument("--precision", choices=["float32", "mixed_bfloat16", "auto"], default="float32", help=PRECISION)
    sv.add_argument("--max-upload-mb", type=int, default=20)
    sv.set_defaults(func=cmd_serve)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s",
                        stream=sys.stderr)
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
