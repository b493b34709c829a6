"""Comparison report of several runs: report.md and a self-contained report.html (opens offline)."""

import base64
import csv
import dataclasses
import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from cxr import figures
from cxr.errors import UsageError
from cxr.evaluation import selection
from cxr.evaluation.stress import PERTURBATIONS
from cxr.runs.folder import read_history, write_json
from cxr.runs.info import INFO_FILE, RunInfo
from cxr.runs.record import TrainingRecord
from cxr.runs.results import Metrics, Stress
from cxr.runs.settings import config_from_run

COLUMNS = ("accuracy", "sensitivity", "specificity", "f1", "roc_auc")


def _load(run_dir: Path) -> dict:
    with open(run_dir / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    history = read_history(run_dir) if (run_dir / "history.csv").exists() else {"val_loss": np.array([np.nan])}
    best = int(np.nanargmin(history["val_loss"])) if np.isfinite(history["val_loss"]).any() else 0
    return {
        "name": run_dir.name,
        "dir": run_dir,
        "info": (info := RunInfo.read(run_dir)),
        "scratch": selection.from_scratch_parts(info),
        "metrics": Metrics.read(run_dir),
        "training": TrainingRecord.read(run_dir),
        "history": history,
        "best_val_loss": float(history["val_loss"][best]),
        "best_val_auc": float(history["val_auc"][best]) if "val_auc" in history else float("nan"),
        "labels": np.array([int(r["label"]) for r in rows]),
        "probs": np.array([float(r["probability"]) for r in rows]),
        "summary": (run_dir / "summary.txt").read_text() if (run_dir / "summary.txt").exists() else "",
    }


def _candidates(runs: list[dict], serve_from_scratch: bool) -> list[dict]:
    """The runs the served model may be chosen from: those built only from pretrained networks.

    (selection.SERVED_ONLY_PRETRAINED says why.) The seed's CNNs stay in the comparison as baselines.
    """
    if serve_from_scratch:
        return runs
    candidates = [r for r in runs if not r["scratch"]]
    if not candidates:
        raise UsageError("no run built only from pretrained networks to serve (" + ", ".join(
            f"{r['name']}: {'+'.join(r['scratch'])} from scratch" for r in runs) + "); add one, or pass "
            "--serve-from-scratch to choose among these anyway")
    return candidates


def _mflops(info: RunInfo) -> str:
    return f"{info.flops_per_image / 1e6:,.0f}" if info.flops_per_image else "n/a"  # older runs lack it


def _table(runs: list[dict]) -> str:
    head = ["run", "model", *COLUMNS, "threshold", "parameters", "MFLOP/image", "train s", "epochs", "predict img/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        m, t = r["metrics"], r["training"]
        cells = [r["name"], r["info"].model, *(m.with_interval(c) for c in COLUMNS), f"{m.threshold:.3f}",
                 f"{r['info'].parameters or 0:,}", _mflops(r["info"]), f"{t.train_seconds:.0f}", str(t.epochs_run),
                 "n/a" if m.predict_images_per_s is None else f"{m.predict_images_per_s:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _curves_figure(runs, path: Path) -> Path:
    runs = [r for r in runs if "loss" in r["history"]]  # an ensemble trains nothing itself
    fig, axes = plt.subplots(len(runs), 2, figsize=(10, 3.0 * len(runs)), squeeze=False)
    for row, r in zip(axes, runs):
        figures.draw_curves(row, r["history"], f"{r['name']}:")
    fig.tight_layout()
    return figures.save(fig, path)


def _confusion_figure(runs, path: Path) -> Path:
    fig, axes = plt.subplots(1, len(runs), figsize=(3.8 * len(runs), 3.4), squeeze=False)
    for ax, r in zip(axes[0], runs):
        figures.draw_confusion(ax, r["metrics"].confusion_matrix, f"{r['name']} (t={r['metrics'].threshold:.2f})")
    fig.tight_layout()
    return figures.save(fig, path)


def _validation_stress(run_dir: Path) -> Stress:
    """The run's validation stress result (`cxr stress`), which the choice of the served run reads."""
    saved = Stress.path(run_dir, "val")
    result = Stress.read(saved) if saved.exists() else None
    if result is None or not selection.has_conditions(result) \
            or saved.stat().st_mtime < (run_dir / INFO_FILE).stat().st_mtime:
        raise UsageError(f"{run_dir}: no validation stress result for the conditions the choice reads (or one older "
                         f"than the model); run `cxr stress --changes selection {run_dir}` first")
    return result


def _selection_table(runs) -> str:
    """Each run's balanced accuracy at its own threshold (and ROC AUC) under every condition the choice reads;
    * marks a condition the run was trained against in a related form."""
    conditions = list(selection.CONDITIONS)
    lines = ["| condition | " + " | ".join(r["name"] for r in runs) + " |", "|---|" + "---|" * len(runs)]
    for name in conditions:
        cells = []
        for r in runs:
            c = r["selection"]["by_condition"][name]
            cells.append(f"{c['balanced_accuracy']:.3f} / {c['roc_auc']:.3f}{' *' if c['seen_in_training'] else ''}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| **worst** | " + " | ".join(f"**{r['selection']['worst_balanced_accuracy']:.3f}**" for r in runs)
                 + " |")
    return "\n".join(lines) + "\n"


def _recipe(run: dict) -> str | None:
    """The run's training settings less its seed and folder (None for an ensemble, which trains nothing)."""
    if run["info"].is_ensemble:
        return None
    settings = dataclasses.asdict(config_from_run(run["dir"]))
    return json.dumps({k: v for k, v in settings.items() if k not in ("seed", "out")}, sort_keys=True, default=str)


def _seed_spread(runs) -> str:
    """For every recipe trained with several seeds: the spread of what the choice reads, on validation."""
    groups: dict[str, list] = {}
    for r in runs:
        recipe = _recipe(r)
        if recipe is not None:
            groups.setdefault(recipe, []).append(r)
    lines = []
    for group in (g for g in groups.values() if len(g) > 1):
        worst = [r["selection"]["worst_balanced_accuracy"] for r in group]
        auc = [r["selection"]["by_condition"]["none"]["roc_auc"] for r in group]
        lines.append(f"| {', '.join(r['name'] for r in group)} | {len(group)} | {min(worst):.3f}-{max(worst):.3f} "
                     f"(spread {max(worst) - min(worst):.3f}) | {min(auc):.3f}-{max(auc):.3f} |")
    if not lines:
        return ""
    return ("| runs (same recipe, other seeds) | seeds | worst-condition balanced accuracy | unchanged ROC AUC |\n"
            "|---|---|---|---|\n" + "\n".join(lines) + "\n")


def _stress_summary(runs) -> str:
    lines = ["| run | unchanged AUC | worst photometric ΔAUC | worst geometric ΔAUC | shortcut probe AUC |",
             "|---|---|---|---|---|"]
    for r in runs:
        stress = Stress.read_side(r["dir"])
        worst = [min((p.roc_auc_change for p in stress.perturbations.values() if p.kind == kind),
                     default=None) for kind in ("photometric", "geometric")]
        shown = " | ".join("not run" if w is None else f"{w:+.3f}" for w in worst)
        lines.append(f"| {r['name']} | {stress.baseline.roc_auc:.3f} | {shown} | {stress.shortcut_probe_auc:.3f} |")
    return "\n".join(lines) + "\n"


def _stress_figure(runs, path: Path) -> Path:
    """ROC AUC of each run on the test split under each change; the dashed line is its unchanged AUC."""
    names = list(PERTURBATIONS)
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(names) + 1.6))
    height = 0.8 / len(runs)
    for i, r in enumerate(runs):
        stress = Stress.read_side(r["dir"])
        values = [stress.perturbations[n].roc_auc if n in stress.perturbations else np.nan for n in names]  # not run
        bars = ax.barh(np.arange(len(names)) + i * height, values, height, label=r["name"])
        ax.axvline(stress.baseline.roc_auc, color=bars.patches[0].get_facecolor(), ls="--", lw=1)
    ax.set_yticks(np.arange(len(names)) + height * (len(runs) - 1) / 2, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0.5, 1.0)
    ax.set_xlabel("ROC AUC on the test split after the change (before preprocessing)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, not over them
    fig.tight_layout()
    return figures.save(fig, path)


def _embed(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _html(title: str, runs, table_md: str, figure_paths: dict, notes: list[str]) -> str:
    head, _, *rows = table_md.strip().splitlines()
    def cells(line):
        return [c.strip() for c in line.strip("|").split("|")]
    table = "<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cells(head)) + "</tr>"
    for line in rows:
        table += "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells(line)) + "</tr>"
    table += "</table>"
    summaries = "".join(
        f"<details><summary>{html.escape(r['name'])} layers</summary><pre>{html.escape(r['summary'])}</pre></details>"
        for r in runs
    )
    body = "".join(f"<h2>{html.escape(name)}</h2>{_embed(path)}" for name, path in figure_paths.items())
    note_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; }} th, td {{ border: 1px solid #ccc; padding: 4px 8px; }}
th {{ background: #f0f3f7; }} img {{ max-width: 100%; }} pre {{ font-size: 11px; overflow-x: auto; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Metrics on each run's held-out test split, at the threshold chosen on validation; 95% bootstrap intervals in
brackets. Not a diagnostic device.</p>
{table}<ul>{note_html}</ul>{body}<h2>Model summaries</h2>{summaries}
</body></html>
"""


def compare(run_dirs: list[Path], out_dir: Path, serve_from_scratch: bool = False) -> Path:
    """The report; the run to serve (best_run.txt) is chosen on validation among the runs built only from
    pretrained networks, or among all with `serve_from_scratch`."""
    runs = [_load(Path(d)) for d in run_dirs]
    candidates = {r["name"] for r in _candidates(runs, serve_from_scratch)}
    out_dir.mkdir(parents=True, exist_ok=True)
    fig_dir = out_dir / "figures"
    figure_paths = {
        "Training curves": _curves_figure(runs, fig_dir / "training_curves.png"),
        "Confusion matrices (test)": _confusion_figure(runs, fig_dir / "confusion_matrices.png"),
        "ROC curves (test)": figures.roc_curves(
            {r["name"]: (r["labels"], r["probs"], r["metrics"].threshold) for r in runs},
            fig_dir / "roc_curves.png", "ROC on test"),
    }
    # The model to serve is picked on validation only, never on the test numbers shown above.
    scores = {}
    for r in runs:
        scores[r["name"]] = r["selection"] = selection.robust_scores(_validation_stress(r["dir"]),
                                                                     r["info"].trained_against)
    best = next(r for r in runs if r["name"] == selection.choose({name: scores[name] for name in candidates}))
    notes = _notes(runs, best, candidates)
    stressed = [r for r in runs if Stress.path(r["dir"]).exists()]
    if stressed:
        figure_paths["Stress test (test split)"] = _stress_figure(stressed, fig_dir / "stress.png")
    table = _table(runs)
    (out_dir / "table.md").write_text(table)
    md = ["# Model comparison", "", ("Test split metrics at the validation-chosen threshold, 95% bootstrap "
          "intervals in brackets."), "", table, *(f"- {n}" for n in notes), ""]
    md += ["## Validation under shift (what chooses the served run)", "",
           "Balanced accuracy at each run's threshold / ROC AUC on the validation split under each condition; * the "
           "run was trained against a related (not the same) form of it.", "", _selection_table(runs)]
    spread = _seed_spread(runs)
    if spread:
        md += ["## Seeds", "", "The same recipe trained with other seeds, on validation: how much of a difference "
               "between runs the seed alone makes.", "", spread]
    if stressed:
        md += ["## Stress test", "", "Test split ROC AUC under acquisition-like changes applied before preprocessing "
               "(`cxr stress RUN`; full tables in each run's MODEL_CARD.md).", "", _stress_summary(stressed)]
    md += [f"## {name}\n\n![{name}]({path.relative_to(out_dir)})\n" for name, path in figure_paths.items()]
    md += ["## Model summaries", ""] + [f"### {r['name']}\n\n```\n{r['summary']}```\n" for r in runs]
    (out_dir / "report.md").write_text("\n".join(md))
    (out_dir / "report.html").write_text(_html("cxr model comparison", runs, table, figure_paths, notes))
    (out_dir / "best_run.txt").write_text(str(best["dir"]) + "\n")
    write_json(out_dir / "comparison.json", [
        {"run": str(r["dir"]), "model": r["info"].model, "best_val_loss": r["best_val_loss"],
         "from_scratch": r["scratch"], "candidate": r["name"] in candidates,
         "validation_selection": r["selection"],
         **{c: getattr(r["metrics"], c) for c in (*COLUMNS, "threshold", "predict_images_per_s")},
         "ci95": r["metrics"].ci95, "train_seconds": r["training"].train_seconds}
        for r in runs
    ])
    return out_dir / "report.html"


def _notes(runs: list[dict], best: dict, candidates: set) -> list[str]:
    """The report's notes: each run's data and weights, the validation worst cases, and which run is served."""
    notes = [f"{r['name']}: {r['training'].split_note}; {r['info'].weights_note or 'trained from scratch'}"
             for r in runs]
    notes.append(f"Validation, worst case over the {len(selection.CONDITIONS)} conditions of the rule (balanced "
                 "accuracy at the run's threshold, on which condition / ROC AUC / balanced accuracy on the families "
                 "it was not trained against in any form): " + ", ".join(
                     f"{r['name']} {r['selection']['worst_balanced_accuracy']:.3f} "
                     f"({r['selection']['worst_condition']}) / {r['selection']['worst_roc_auc']:.3f} / "
                     f"{r['selection']['worst_unseen_balanced_accuracy']:.3f}" for r in runs) + ".")
    scratch = [r["name"] for r in runs if r["name"] not in candidates]
    notes.append(f"Chosen on validation: {best['name']} (the one `make serve` serves), by the rule: {selection.RULE}"
                 + (f"; {selection.SERVED_ONLY_PRETRAINED} ({', '.join(scratch)}: trained from scratch, compared "
                    "as baselines, never served)" if scratch else "") + ".")
    return notes
