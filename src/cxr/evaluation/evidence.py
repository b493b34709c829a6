"""`cxr evidence RUN [--data FOLDER]`: where a model finds its evidence, over many X-rays.

A map of one X-ray shows where one answer came from; this counts where the evidence lies over the validation
split (or a labelled folder): the share of each map's positive evidence (for the class called) that falls in
the lung fields (the box of cxr.data.thorax, found on each model input), above them (neck, shoulders), below
them (diaphragm, abdomen), beside them, and in the outer border and corners, where markers and burned-in
annotations sit. Shortcut studies of chest X-ray models found evidence outside the lungs more than once
(DeGrave et al. 2021: laterality markers and borders; Zech et al. 2018: hospital tokens).
"""

from pathlib import Path

import numpy as np

from cxr import CLASSES, figures
from cxr.data.layout import discover
from cxr.data.split import read_split_csv
from cxr.data.thorax import thorax_box
from cxr.errors import DataError
from cxr.inference.predictor import Predictor
from cxr.runs.results import Evidence

REGIONS = ("lungs", "above", "below", "beside", "border")
BORDER = 0.10  # the outer band of every side (the preprocessing's blank frame is as wide)
CALLS = ("true positive", "false positive", "true negative", "false negative")
BATCH = 32


def region_masks(size: int, box) -> dict[str, np.ndarray]:
    """(size, size) boolean masks of REGIONS for a lung box (shares of the image); they cover the image once."""
    centres = (np.arange(size) + 0.5) / size
    yy, xx = np.meshgrid(centres, centres, indexing="ij")
    border = (yy < BORDER) | (yy > 1 - BORDER) | (xx < BORDER) | (xx > 1 - BORDER)
    rows_in = (yy >= box.top) & (yy < box.top + box.height)
    lungs = ~border & rows_in & (xx >= box.left) & (xx < box.left + box.width)
    above, below = ~border & (yy < box.top), ~border & (yy >= box.top + box.height)
    return {"lungs": lungs, "above": above, "below": below, "beside": ~border & rows_in & ~lungs, "border": border}


def evidence_shares(heatmap: np.ndarray, masks: dict) -> dict | None:
    """Each region's share of the map's positive evidence; None for a blank map."""
    total = float(heatmap.sum())
    if not total > 0:
        return None
    return {name: float(heatmap[mask].sum() / total) for name, mask in masks.items()}


def _mean_shares(rows: list) -> dict | None:
    rows = [r for r in rows if r is not None]
    return {name: float(np.mean([r[name] for r in rows])) for name in REGIONS} if rows else None


def _call(label: int, called: bool) -> str:
    return CALLS[(0 if label else 1) if called else (2 if not label else 3)]


def evidence_run(run_dir: Path, data: Path | None = None, out: Path | None = None) -> Evidence:
    """Writes evidence.json (validation) or evidence_FOLDER.json (a labelled folder) and a figure; returns it."""
    run_dir = Path(run_dir)
    if data is None:
        records, source, name = read_split_csv(run_dir / "split.csv").part("val"), "validation split", "evidence"
    else:
        records, source, name = discover(Path(data)), str(data), f"evidence_{Path(data).name}"
    if not records:
        raise DataError(f"{data or run_dir / 'split.csv'}: no labelled X-rays to explain")
    predictor = Predictor(run_dir)
    loaded = predictor.load([r.path for r in records])
    if not len(loaded.paths):
        raise DataError(f"{source}: none of the {len(records)} X-rays could be read")
    label_of = {Path(r.path): r.label for r in records}
    labels = np.array([label_of[Path(p)] for p in loaded.paths])
    probs = predictor.predict(loaded.images)
    called = probs >= predictor.threshold
    explainer = predictor.explainer()
    size = loaded.images.shape[1]
    heatmaps, shares, areas, found = [], [], [], 0
    for i in range(0, len(labels), BATCH):
        maps = explainer.explain(loaded.images[i: i + BATCH], called=called[i: i + BATCH]).heatmaps
        for image, heatmap in zip(loaded.images[i: i + BATCH], maps):
            box = thorax_box(np.asarray(image)[..., 0] if image.ndim == 3 else image)
            found += box.found
            masks = region_masks(size, box)
            shares.append(evidence_shares(heatmap, masks))
            areas.append(evidence_shares(np.ones_like(heatmap), masks))  # what evidence spread evenly would give
            heatmaps.append(heatmap)
    heatmaps = np.stack(heatmaps)
    calls = np.array([_call(label, c) for label, c in zip(labels, called)])
    description = explainer.description
    out = Path(out or run_dir)
    result = Evidence.create({
        "run": str(run_dir), "data": source, "images": int(len(labels)), "method": description["method"],
        "layer": description["layer"], "grid": description["grid"], "members": description["members"],
        "regions": {"border": f"outer {BORDER:.0%} of every side", "lungs": "the lung-field box (cxr.data.thorax)",
                    "above": "above the box", "below": "below the box", "beside": "left or right of the box"},
        "lung_box_found": float(found / len(labels)),
        "blank_maps": int(sum(s is None for s in shares)),
        "area": _mean_shares(areas),
        "by_class": {CLASSES[c]: _mean_shares([s for s, label in zip(shares, labels) if label == c]) for c in (0, 1)},
        "by_call": {call: {"images": int((calls == call).sum()),
                           "shares": _mean_shares([s for s, k in zip(shares, calls) if k == call])} for call in CALLS},
    }, out / f"{name}.json")
    mean_maps = {f"{CLASSES[c]} (true class)": heatmaps[labels == c] for c in (0, 1)}
    mean_maps.update({call: heatmaps[calls == call] for call in CALLS})
    figures.evidence_maps({k: (v.mean(axis=0) if len(v) else None, len(v)) for k, v in mean_maps.items()},
                          loaded.images[..., 0].mean(axis=0) if loaded.images.ndim == 4 else loaded.images.mean(axis=0),
                          out / "figures" / f"{name}.png", explainer.title)
    return result


def evidence_table(result: Evidence) -> str:
    lines = ["| class | " + " | ".join(REGIONS) + " |", "|---|" + "---|" * len(REGIONS)]
    rows = {**result.by_class, "(share of the image)": result.area}
    for name, shares in rows.items():
        if shares is not None:
            lines.append(f"| {name} | " + " | ".join(f"{shares[r]:.0%}" for r in REGIONS) + " |")
    return "\n".join(lines) + "\n"
