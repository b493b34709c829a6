"""`cxr audit DATA`: what a data folder holds, and whether its labels can be read off acquisition cues.

Per split and class: images, patients, byte-identical duplicates, sizes and modes. Then the shortcut
probe (cxr.evaluation.probe) on the model input without and with the project's preprocessing, and the aspect
ratio of the originals as a one-number classifier. A probe above 0.65 is flagged: a CNN can learn that
cue instead of the lungs, and lose it on X-rays from another batch.
"""

import hashlib
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from cxr import CLASSES, figures
from cxr.data.dataset import load_part
from cxr.data.layout import discover
from cxr.data.preprocess import Preprocessing
from cxr.evaluation.probe import FEATURES, WARN_ABOVE, global_statistics, probe_auc
from cxr.runs.folder import write_json


def _header(path: Path):
    """(width, height, mode) without decoding the pixels; None for files Pillow cannot open."""
    try:
        with Image.open(path) as img:
            return img.width, img.height, img.mode
    except Exception:
        return None


def inventory(records, headers: dict) -> list[dict]:
    groups = defaultdict(list)
    for r in records:
        groups[(r.given_split, CLASSES[r.label])].append(r)
    rows = []
    for (split, cls), members in sorted(groups.items()):
        digests = Counter(hashlib.sha256(r.path.read_bytes()).hexdigest() for r in members)
        readable = [h for r in members if (h := headers[r.path])]
        widths, heights = np.array([h[0] for h in readable]), np.array([h[1] for h in readable])
        rows.append({
            "split": split, "class": cls, "images": len(members), "patients": len({r.patient for r in members}),
            "duplicate_groups": sum(1 for n in digests.values() if n > 1),
            "unreadable": len(members) - len(readable),
            "width": [int(widths.min()), int(np.median(widths)), int(widths.max())] if readable else None,
            "height": [int(heights.min()), int(np.median(heights)), int(heights.max())] if readable else None,
            "modes": dict(Counter(h[2] for h in readable)),
        })
    return rows


def aspect_ratio_auc(records, headers: dict) -> float | None:
    """ROC AUC of width / height alone for PNEUMONIA; None where every image has one shape (squashed copies)."""
    from sklearn.metrics import roc_auc_score

    pairs = [(h[0] / h[1], r.label) for r in records if (h := headers[r.path])]
    ratios, labels = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    if len(set(np.round(ratios, 3))) < 2 or len(set(labels)) < 2:
        return None
    return float(roc_auc_score(labels, ratios))


def audit(data_dir: Path, out_dir: Path, prep: Preprocessing) -> dict:
    from sklearn.metrics import roc_auc_score

    records = discover(Path(data_dir))
    headers = {r.path: _header(r.path) for r in records}  # read once, for the inventory and the aspect ratio
    raw_prep = Preprocessing(prep.size)
    probes = {}
    for name, p in (("raw", raw_prep), ("preprocessed", prep)):
        part, _, _ = load_part(records, p)
        stats = global_statistics(part.images)
        probes[name] = {
            "preprocessing": p.to_dict(),
            "auc": probe_auc(stats, part.labels, part.patients),
            "feature_auc": {f: float(roc_auc_score(part.labels, stats[:, i])) for i, f in enumerate(FEATURES)},
        }
    result = {
        "data": str(data_dir),
        "inventory": inventory(records, headers),
        "shortcut_probe": probes,
        "aspect_ratio_auc": aspect_ratio_auc(records, headers),
        "warn_above": WARN_ABOVE,
    }
    result["warnings"] = [
        f"shortcut probe on the {name} input: AUC {p['auc']:.3f} > {WARN_ABOVE}" for name, p in probes.items()
        if p["auc"] > WARN_ABOVE
    ]
    if result["aspect_ratio_auc"] is not None and abs(result["aspect_ratio_auc"] - 0.5) > WARN_ABOVE - 0.5:
        result["warnings"].append(f"aspect ratio alone: AUC {result['aspect_ratio_auc']:.3f}")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "audit.json", result)
    (out_dir / "audit.md").write_text(audit_markdown(result))
    figures.probe_chart(probes, WARN_ABOVE, out_dir / "audit.png")
    return result


def audit_markdown(result: dict) -> str:
    lines = [f"# Data audit: {result['data']}", "",
             "| split | class | images | patients | duplicate groups | unreadable | width min/median/max | modes |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["inventory"]:
        width = "/".join(map(str, r["width"])) if r["width"] else "-"
        modes = ", ".join(f"{m} {n}" for m, n in r["modes"].items())
        lines.append(f"| {r['split']} | {r['class']} | {r['images']} | {r['patients']} | {r['duplicate_groups']} "
                     f"| {r['unreadable']} | {width} | {modes} |")
    lines += ["", "Shortcut probe: cross-validated ROC AUC (5 folds grouped by patient) of a logistic regression on "
              "six global statistics of the model input (1st and 5th percentile, mean, standard deviation, and the "
              "mean and standard deviation of a 6-pixel border at 64 px). 0.5: no cue; warning above "
              f"{result['warn_above']}.", "", "| input | preprocessing | probe AUC |", "|---|---|---|"]
    for name, p in result["shortcut_probe"].items():
        prep = ", ".join(f"{k}={v}" for k, v in p["preprocessing"].items() if k != "version")
        lines.append(f"| {name} | {prep} | {p['auc']:.3f} |")
    ratio = result["aspect_ratio_auc"]
    lines += ["", "Aspect ratio alone (ROC AUC of width/height for PNEUMONIA): "
              + ("n/a, every image has the same shape (squashed copies)" if ratio is None else f"{ratio:.3f}"), ""]
    lines += [f"**Warning:** {w}" for w in result["warnings"]]
    return "\n".join(lines) + "\n"
