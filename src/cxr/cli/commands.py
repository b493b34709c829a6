"""What each `cxr` subcommand does; the argument parser is in cxr.cli (__init__.py). Heavy imports stay inside each."""

import dataclasses
import logging
import sys
from pathlib import Path

from cxr.errors import UsageError

log = logging.getLogger(__name__)


def _headline(report) -> str:
    """One line of a Metrics (cxr.runs.results)."""
    return (f"n={report.n}  threshold={report.threshold:.3f}  accuracy={report.with_interval('accuracy')}  "
            f"sensitivity={report.sensitivity:.3f}  specificity={report.specificity:.3f}  f1={report.f1:.3f}  "
            f"roc_auc={report.with_interval('roc_auc')}")


def training_config(args):
    """The TrainConfig of `cxr train`: from the flags (one per field), or from the run being resumed."""
    from cxr.data.layout import default_data_dir
    from cxr.runs.settings import TrainConfig, config_from_run

    if args.resume:
        cfg = config_from_run(args.resume)
        cfg.out = str(args.resume)
        return cfg
    if not args.out:
        raise UsageError("cxr train: give --out runs/NAME (or --resume runs/NAME)")
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    given["data"] = str(args.data or default_data_dir())
    given["out"] = str(args.out)
    if given["split_seed"] is None:
        given["split_seed"] = args.seed
    return TrainConfig(**given)


def cmd_train(args) -> None:
    from cxr.evaluation.evaluate import evaluate_run
    from cxr.reports.model_card import write_model_card
    from cxr.runs.record import TRAINING_FILE, TrainingRecord
    from cxr.training.fit import train

    cfg = training_config(args)
    run_dir = train(cfg, resume=bool(args.resume))
    report = evaluate_run(run_dir)
    write_model_card(run_dir)
    training = TrainingRecord.read(run_dir)
    print(f"split: {training.split_note}; {training.images}")
    print(f"{cfg.model}: {training.epochs_run} epochs, {training.epoch_seconds_mean:.1f} s/epoch, "
          f"{training.train_seconds:.0f} s training")
    print(f"test: {_headline(report)}")
    if training.skipped:
        print(f"skipped {len(training.skipped)} unreadable files (listed in {run_dir / TRAINING_FILE})")
    print(f"run folder: {run_dir}  (figures in {run_dir / 'figures'}, model card MODEL_CARD.md)")


def cmd_evaluate(args) -> None:
    from cxr.evaluation.evaluate import evaluate_run

    report = evaluate_run(args.run, data=args.data, out=args.out, threshold=args.threshold, precision=args.precision)
    print(_headline(report))
    flagged = report.ood_flagged
    print("flagged as unlike the training X-rays: " + ", ".join(
        f"{name} guard {'n/a' if share is None else f'{share:.1%}'}" for name, share in flagged.items()))
    if args.data is None and args.out is None and args.threshold is None:  # the run's own test metrics changed
        from cxr.reports.model_card import write_model_card

        write_model_card(args.run)
    if report.skipped:
        print(f"skipped {len(report.skipped)} unreadable files")


def cmd_compare(args) -> None:
    from cxr.reports.compare import compare

    report = compare([Path(r) for r in args.runs], Path(args.out), args.serve_from_scratch)
    print((report.parent / "table.md").read_text())
    print(f"report: {report}")


def cmd_predict(args) -> int:
    from cxr.inference.batch import SKIPPED_EXIT_CODE, RowWriter, expand_inputs, open_output, predict_batches
    from cxr.inference.ood import GUARD_FILE

    if args.out and args.out.exists() and not args.force:
        raise UsageError(f"{args.out} already exists; choose another --out or pass --force")
    if args.ray and args.threshold is not None:
        raise UsageError("--threshold runs on the local path only; drop --ray to use your own threshold")
    if args.ray and args.explain:
        raise UsageError("--explain runs on the local path only; drop --ray to write explanations")
    files, missing = expand_inputs(args.paths)
    for path, reason in missing:
        log.warning("skipped %s: %s", path, reason)
    skipped = list(missing)
    if not (args.run / GUARD_FILE).exists():
        print(f"note: {args.run} has no out-of-distribution guard (ood columns empty); `cxr guard {args.run}` "
              "fits one", file=sys.stderr)
    if args.ray:
        from cxr.inference.ray_batch import ray_batches
        from cxr.runs.folder import run_preprocessing

        batches = ray_batches(args.run, files, run_preprocessing(args.run, args.engine), args.engine,
                              args.precision, args.workers, args.ray_address)
    else:
        from cxr.inference.predictor import Predictor

        predictor = Predictor(args.run, engine=args.engine, precision=args.precision, threshold=args.threshold)
        batches = predict_batches(predictor, files, args.explain)
    with open_output(args.out) as stream:
        writer = RowWriter(stream, args.format)
        for rows, bad in batches:
            writer.rows(rows)
            skipped += bad
            log.info("%d of %d files done", writer.count + len(skipped), len(files) + len(missing))
        writer.close()
    if args.out:
        print(f"{writer.count} predictions written to {args.out}", file=sys.stderr)
    if skipped:
        print(f"{len(skipped)} inputs skipped", file=sys.stderr)
        return SKIPPED_EXIT_CODE
    return 0


def cmd_guard(args) -> None:
    from cxr.data.dataset import load_part
    from cxr.data.split import read_split_csv
    from cxr.runs.folder import load_run
    from cxr.training.guards import with_guards

    model, info = load_run(args.run)
    split = read_split_csv(args.run / "split.csv")
    train, val = (load_part(split.part(side), info.preprocessing)[0] for side in ("train", "val"))
    info = with_guards(args.run, model, info, train.images, val.images)
    info.write(args.run)
    for name, guard in (("pixel", info.guard), ("feature", info.feature_guard)):
        print(f"{name} guard fitted on {len(train.labels)} training X-rays: cut-off {guard.cutoff} ({guard.rule}); "
              f"flags {guard.validation_flagged:.1%} of validation; written to {args.run / guard.file}")


def cmd_sweep(args) -> None:
    from cxr.training.sweep import run_sweep

    report = run_sweep(args.config, args.out, args.ray_address)
    print(report.read_text())
    print(f"report: {report}; trial runs in {args.out / 'trials'}")


def cmd_audit(args) -> int:
    from cxr.data.layout import default_data_dir
    from cxr.data.preprocess import Preprocessing
    from cxr.evaluation.audit import audit

    prep = Preprocessing(args.size, args.resize, args.intensity, args.border)
    audit(Path(args.data or default_data_dir()), Path(args.out), prep)
    print((Path(args.out) / "audit.md").read_text())
    print(f"audit written to {args.out} (audit.json, audit.md, audit.png, framing_probe.png, lung_boxes.png)")
    return 0


def cmd_evidence(args) -> None:
    from cxr.evaluation.evidence import evidence_run, evidence_table
    from cxr.reports.model_card import write_model_card
    from cxr.runs.results import Metrics

    result = evidence_run(args.run, args.data, args.out)
    print(f"{args.run}: share of the evidence for the class called, on the {result.data} "
          f"({result.images} X-rays; {result.method}, grid {result.grid[0]} x {result.grid[1]})")
    print(evidence_table(result))
    if args.data is None and (Path(args.run) / Metrics.FILE).exists():
        print(f"model card updated: {write_model_card(args.run)}")


def cmd_site_check(args) -> None:
    from cxr.evaluation.site_check import site_check

    if (args.folder is None) == (args.split is None):
        raise UsageError("cxr site-check: give a FOLDER or --split SIDE (one of them)")
    result = site_check(args.folder, args.against, args.out, side=args.split)
    estimate = result.estimated_accuracy
    print(f"{result.folder} against {args.against}: {result.verdict.upper()}: {result.why}")
    print(f"  domain classifier AUC {result.feature_shift.domain_classifier_auc:.3f}, guards flag "
          f"{result.guard_rate:.1%} (validation {result.validation_guard_rate:.1%}), predicted PNEUMONIA "
          f"{result.output_shift.predicted_prevalence:.1%}, estimated accuracy "
          f"{'n/a' if estimate is None else f'{estimate:.3f}'}"
          + ("" if result.accuracy is None else f" (measured: {result.accuracy:.3f})"))
    name = args.split or Path(args.folder).resolve().name
    print(f"written: {args.out or Path(args.against) / 'site_checks' / name}")


def cmd_stress(args) -> None:
    from cxr.evaluation.stress import stress_run, stress_table
    from cxr.inference.predictor import Predictor
    from cxr.reports.model_card import write_model_card
    from cxr.runs.results import Stress

    for run in args.runs:  # runs sharing a split and preprocessing reuse the changed images
        predictor = Predictor(run, engine=args.engine, precision=args.precision)
        changes = args.changes.split(",") if args.changes else None
        result = stress_run(run, predictor=predictor, images=args.images, changes=changes)
        stress_run(run, side="val", predictor=predictor, images=args.images, changes=changes)  # for `cxr compare`
        print(f"{run}:")
        print(stress_table(result))
        worst = result.worst_photometric_auc_change
        print(f"worst photometric change of ROC AUC: {'not run' if worst is None else f'{worst:+.3f}'}; "
              f"shortcut probe on the run's input: {result.shortcut_probe_auc:.3f}")
        probe = result.text_probe
        if probe and probe.flipped_to_pneumonia is not None:
            print(f"burned-in text probe: {probe.flipped_to_pneumonia:.1%} of {probe.normal_called_normal} "
                  "NORMAL X-rays called NORMAL become PNEUMONIA calls with annotations added")
        print(f"written: {Stress.path(run)}, {Stress.path(run, 'val')}, {Path(run) / 'figures' / 'stress.png'}, "
              f"{write_model_card(run)}\n")


def cmd_ensemble(args) -> None:
    from cxr.evaluation.evaluate import evaluate_run
    from cxr.reports.model_card import write_model_card
    from cxr.training.ensemble import make_ensemble

    run_dir = make_ensemble(args.runs, args.out, tta=not args.no_tta)
    print(f"test: {_headline(evaluate_run(run_dir))}")
    write_model_card(run_dir)
    print(f"run folder: {run_dir}")


def cmd_export(args) -> None:
    from cxr.inference.export import export_onnx

    print(f"wrote {export_onnx(args.run, force=args.force)} (metadata beside it)")


def cmd_serve(args) -> None:
    try:
        import uvicorn

        from cxr.serve.app import create_app
    except ImportError:
        raise UsageError("serving needs the serve extra: pip install -e '.[serve]' in the cxr folder") from None
    app = create_app(args.run, engine=args.engine, precision=args.precision, max_upload=args.max_upload_mb * 2**20)
    print(f"serving {args.run} on http://{args.host}:{args.port}  (API docs: /docs)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
