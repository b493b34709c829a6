"""MODEL_CARD.md for a run: what the model is for, what it was trained on, how well it does, where it fails."""

from pathlib import Path

from cxr.evaluation import selection
from cxr.runs.info import RunInfo
from cxr.runs.record import TrainingRecord
from cxr.runs.results import Evidence, Metrics, Stress

INTENDED_USE = (
    "Research and teaching: screening-style triage of pediatric (1-5 years) frontal chest X-rays into NORMAL or "
    "PNEUMONIA, for people who want to inspect, export and serve such a model. **Not a diagnosis**: not a "
    "medical device, not validated for clinical use; a qualified clinician must read every X-ray."
)
LIMITATIONS = [
    "Trained on one acquisition batch (Guangzhou Women and Children's Medical Center, Kermany et al. 2018). "
    "On X-rays from another batch, earlier models of this project lost 15 points of accuracy, most of it as "
    "NORMAL images called PNEUMONIA; the carved test split below comes from the training batch and overstates "
    "what to expect elsewhere. Score your own data: `cxr evaluate RUN --data YOUR_FOLDER`.",
    "Children only; no adults, no lateral views, no other findings (effusion, nodules, tubes and lines).",
    "Bacterial and viral pneumonia are one class.",
    "Probabilities are calibrated on the validation split (temperature scaling); calibration on other data "
    "is not guaranteed.",
]


def _members(info: RunInfo) -> list[str]:
    """An ensemble's members and the input each sees (a smaller one: the input averaged over blocks)."""
    size = info.size
    seen = [f"`{m.run.name}` ({m.size} px)" if m.size == size else f"`{m.run.name}` ({m.size} px: the input "
            f"averaged over {size // m.size} x {size // m.size} blocks)" for m in info.members]
    combined = "mean logit" if info.combine == "mean_logit" else "mean probability"
    return [f"- {combined} of: {', '.join(seen)}"] if seen else []


def _servable(info: RunInfo) -> str:
    scratch = selection.from_scratch_parts(info)
    if scratch:
        return (f"- this run is a baseline, not a candidate to serve: {', '.join(f'`{k}`' for k in scratch)} "
                "trained from scratch")
    return "- this run is a candidate to serve: built only from pretrained networks"


def _model_section(info: RunInfo, training: TrainingRecord) -> list[str]:
    prep = info.preprocessing
    parameters = "" if info.parameters is None else (f", {info.parameters:,} parameters "
                                                     f"({info.trainable_parameters or 0:,} trainable)")
    return ["## Data", "", f"- {training.split_note}", f"- images per side: {training.images}",
            f"- skipped unreadable files: {len(training.skipped)}", "",
            "## Model and preprocessing", "",
            f"- architecture: `{info.model}`{parameters}; weights: {info.weights_note or 'trained from scratch'}",
            f"- input: {prep.size} x {prep.size} grayscale; resize `{prep.resize}`, intensity "
            f"`{prep.intensity}`, border `{prep.border}` (stored in model.json, applied by every path)",
            *_members(info),
            f"- trained against (augmentation): {', '.join(info.trained_against) or 'none of the validation shifts'}",
            f"- decision threshold {info.threshold:.3f}: {info.threshold_rule}",
            f"- temperature {info.temperature:.3f} (fitted on validation)",
            f"- which run `cxr compare` serves: {selection.RULE}; {selection.SERVED_ONLY_PRETRAINED}",
            _servable(info), ""]


def _validation_section(stress_val: Stress, info: RunInfo) -> list[str]:
    scores = selection.robust_scores(stress_val, info.trained_against)
    return ["## Validation under framing and acquisition changes (what the choices above look at)", "",
            "Each condition applied to every validation X-ray; \"trained against\": the run saw a related "
            "(not the same) form of it as training augmentation.", "",
            "| condition | ROC AUC | sensitivity | specificity | balanced accuracy | trained against |",
            "|---|---|---|---|---|---|",
            *(f"| {name} | {s['roc_auc']:.3f} | {s['sensitivity']:.3f} | {s['specificity']:.3f} "
              f"| {s['balanced_accuracy']:.3f} | {'yes' if s['seen_in_training'] else 'no'} |"
              for name, s in scores["by_condition"].items()),
            "", f"Worst condition: {scores['worst_condition']} (balanced accuracy "
            f"{scores['worst_balanced_accuracy']:.3f}).", ""]


def _metrics_section(metrics: Metrics) -> list[str]:
    lines = [f"## Metrics on {metrics.data} (n = {metrics.n}, 95% intervals resampling {metrics.ci95_resamples})",
             "", "| accuracy | sensitivity | specificity | F1 | ROC AUC |", "|---|---|---|---|---|",
             "| " + " | ".join(metrics.with_interval(m) for m in ("accuracy", "sensitivity", "specificity", "f1",
                                                                 "roc_auc")) + " |", ""]
    if metrics.calibration is not None:
        c = metrics.calibration
        lines += [f"Calibration on this split: Brier {c.brier:.3f}, ECE {c.ece:.3f}.", ""]
    return lines


def _stress_section(stress: Stress) -> list[str]:
    from cxr.evaluation.stress import stress_table

    return ["## Stress test (acquisition-like changes before preprocessing, test split)", "", stress_table(stress),
            f"Shortcut probe on this model's input: ROC AUC {stress.shortcut_probe_auc:.3f} (0.5: no cue).", ""]


def _evidence_section(evidence: Evidence) -> list[str]:
    from cxr.evaluation.evidence import evidence_table

    return ["## Where the evidence lies (`cxr evidence`, validation split)", "",
            f"Share of each evidence map's positive weight, by true class ({evidence.method}, grid "
            f"{evidence.grid[0]} x {evidence.grid[1]}; lung box found on "
            f"{evidence.lung_box_found:.0%} of the X-rays, the whole image inside the border elsewhere):",
            "", evidence_table(evidence)]


def write_model_card(run_dir: Path) -> Path:
    """RUN/MODEL_CARD.md from what the run holds: each section where its result file exists."""
    run_dir = Path(run_dir)
    info, training = RunInfo.read(run_dir), TrainingRecord.read(run_dir)
    lines = [f"# Model card: {run_dir.name} ({info.model})", "", "## Intended use", "", INTENDED_USE, "",
             *_model_section(info, training)]
    if Stress.path(run_dir, "val").exists():
        stress_val = Stress.read_side(run_dir, "val")
        if selection.has_conditions(stress_val):
            lines += _validation_section(stress_val, info)
    lines += _metrics_section(Metrics.read(run_dir))
    if Stress.path(run_dir).exists():
        lines += _stress_section(Stress.read_side(run_dir))
    if (run_dir / Evidence.FILE).exists():
        lines += _evidence_section(Evidence.read(run_dir))
    lines += ["## Limitations", "", *(f"- {item}" for item in LIMITATIONS), ""]
    path = run_dir / "MODEL_CARD.md"
    path.write_text("\n".join(lines))
    return path
