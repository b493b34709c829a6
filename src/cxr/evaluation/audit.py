"""`cxr audit DATA`: what a data folder holds, and whether its labels can be read off acquisition cues.

Per split and class: images, patients, byte-identical duplicates, sizes and modes. Then two probes, each
on the model input without and with the project's preprocessing: the shortcut probe (cxr.evaluation.probe:
intensity and border statistics) and the framing probe (the lung-field box of cxr.data.thorax: how large
the lungs appear and where), the latter also on the plain input as the targeted framing augmentation
changes it in training; and the aspect ratio of the originals as a one-number classifier. A probe above
0.65 is flagged: a CNN can learn that cue instead of the lungs, and lose it on X-rays from another batch.
"""

import hashlib
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from cxr import CLASSES, figures
from cxr.data.dataset import load_part
from cxr.data.framing import FINE, framing_augmentation
from cxr.data.layout import discover
from cxr.data.preprocess import Preprocessing
from cxr.data.thorax import FRAMING_FEATURES, box_of, framing_features, lung_fields
from cxr.evaluation.probe import FEATURES, WARN_ABOVE, global_statistics, probe_auc
from cxr.runs.folder import write_json

AUGMENTATION_SEED = (0, 0)  # one fixed draw of the framing augmentation for the probe
CHUNK = 256  # images augmented at a time (the fine copies at twice the size are large)
TEXT_PROBE_IMAGES = 400  # NORMAL X-rays the burned-in text probe annotates


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


def _probe(features: np.ndarray, names, part, prep: Preprocessing, **extra) -> dict:
    from sklearn.metrics import roc_auc_score

    return {
        "preprocessing": prep.to_dict(),
        "auc": probe_auc(features, part.labels, part.patients),
        "feature_auc": {f: float(roc_auc_score(part.labels, features[:, i])) for i, f in enumerate(names)},
        **extra,
    }


def _framing_probe(images: np.ndarray, part, prep: Preprocessing) -> dict:
    features, found = framing_features(images)
    lungs_found = {cls: float(found[part.labels == i].mean())
                   for i, cls in enumerate(CLASSES) if (part.labels == i).any()}
    return _probe(features, FRAMING_FEATURES, part, prep, lungs_found=lungs_found)


def _fields_and_box(image: np.ndarray):
    fields = lung_fields(image)
    return fields, box_of(fields)


def framing_augmented(part, fine_part, prep: Preprocessing) -> np.ndarray:
    """The plain images as the targeted framing augmentation hands them to training, one fixed draw."""
    import tensorflow as tf

    chunks = []
    for start in range(0, len(part.labels), CHUNK):
        rows = slice(start, start + CHUNK)
        chunks.append(framing_augmentation(tf.constant(part.images[rows]), tf.constant(part.labels[rows]),
                                           tf.constant([AUGMENTATION_SEED[0], AUGMENTATION_SEED[1] + start]),
                                           prep, tf.constant(fine_part.images[rows])).numpy())
    return np.concatenate(chunks)


def text_probe(part, prep: Preprocessing, limit: int = TEXT_PROBE_IMAGES) -> dict:
    """The burned-in text probe on data: the shortcut probe's logistic regression, fitted on every image, then
    asked about NORMAL X-rays with and without annotations burned in (cxr.data.acquisition.burned_in_text).
    Flips to PNEUMONIA mean that annotations push the acquisition statistics toward the PNEUMONIA side of the
    training batch: a model that reads those statistics would flip too."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from cxr.data.acquisition import burned_in_text
    from cxr.data.images import read_grayscale

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, class_weight="balanced"))
    probe.fit(global_statistics(part.images), part.labels)
    normal = [p for p, label in zip(part.paths, part.labels) if label == 0][:limit]
    originals = [read_grayscale(Path(p).read_bytes(), prep.size) for p in normal]
    def probability(change):
        return probe.predict_proba(global_statistics(np.stack([prep.apply(change(im)) for im in originals])))[:, 1]

    before, after = probability(lambda im: im), probability(burned_in_text)
    kept_normal = before < 0.5
    return {"normal_images": len(normal), "called_pneumonia_before": float(np.mean(~kept_normal)),
            "called_pneumonia_after": float(np.mean(after >= 0.5)),
            "flipped_to_pneumonia": float(np.mean(after[kept_normal] >= 0.5)) if kept_normal.any() else None,
            "mean_probability_change": float(np.mean(after - before))}


def audit(data_dir: Path, out_dir: Path, prep: Preprocessing) -> dict:
    records = discover(Path(data_dir))
    headers = {r.path: _header(r.path) for r in records}  # read once, for the inventory and the aspect ratio
    raw_prep = Preprocessing(prep.size)
    shortcut, framing, parts = {}, {}, {}
    for name, p in (("raw", raw_prep), ("preprocessed", prep)):
        part, _, _ = load_part(records, p)
        parts[name] = part
        shortcut[name] = _probe(global_statistics(part.images), FEATURES, part, p)
        framing[name] = _framing_probe(part.images, part, p)
    kept = set(parts["raw"].paths)
    fine, _, _ = load_part([r for r in records if r.path in kept], raw_prep.at_size(FINE * prep.size))
    framing["raw, framing augmentation"] = _framing_probe(framing_augmented(parts["raw"], fine, raw_prep),
                                                          parts["raw"], raw_prep)
    result = {
        "data": str(data_dir),
        "inventory": inventory(records, headers),
        "shortcut_probe": shortcut,
        "framing_probe": framing,
        "aspect_ratio_auc": aspect_ratio_auc(records, headers),
        "text_probe": text_probe(parts["raw"], raw_prep),
        "warn_above": WARN_ABOVE,
    }
    result["warnings"] = [
        f"{kind} probe on the {name} input: AUC {p['auc']:.3f} > {WARN_ABOVE}"
        for kind, probes in (("shortcut", shortcut), ("framing", framing)) for name, p in probes.items()
        if p["auc"] > WARN_ABOVE
    ]
    if result["aspect_ratio_auc"] is not None and abs(result["aspect_ratio_auc"] - 0.5) > WARN_ABOVE - 0.5:
        result["warnings"].append(f"aspect ratio alone: AUC {result['aspect_ratio_auc']:.3f}")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "audit.json", result)
    (out_dir / "audit.md").write_text(audit_markdown(result))
    figures.probe_chart(shortcut, WARN_ABOVE, out_dir / "audit.png", "Can acquisition statistics tell the label?")
    figures.probe_chart(framing, WARN_ABOVE, out_dir / "framing_probe.png",
                        "Can the framing (the lungs' box) tell the label?")
    figures.lung_boxes(parts["raw"].images, parts["raw"].labels, _fields_and_box, out_dir / "lung_boxes.png")
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
    lines += ["", "Framing probe: the same cross-validated logistic regression on the box of the lung fields "
              "(cxr.data.thorax: Otsu thresholds, morphology, the two largest dark regions of the chest; "
              "`lung_boxes.png` shows it on X-rays of both classes): top, left, height, width, centre and aspect. "
              "It asks whether how tightly an X-ray is framed tells its class. The last row is the plain input as "
              "the targeted framing augmentation (`--framing targeted`) hands it to training.", "",
              "| input | preprocessing | probe AUC | strongest single feature | lungs found (else: whole image) |",
              "|---|---|---|---|---|"]
    for name, p in result["framing_probe"].items():
        prep = ", ".join(f"{k}={v}" for k, v in p["preprocessing"].items() if k != "version")
        feature, auc = max(p["feature_auc"].items(), key=lambda item: abs(item[1] - 0.5))
        found = ", ".join(f"{cls} {share:.1%}" for cls, share in p["lungs_found"].items())
        lines.append(f"| {name} | {prep} | {p['auc']:.3f} | {feature} {auc:.3f} | {found} |")
    ratio = result["aspect_ratio_auc"]
    lines += ["", "Aspect ratio alone (ROC AUC of width/height for PNEUMONIA): "
              + ("n/a, every image has the same shape (squashed copies)" if ratio is None else f"{ratio:.3f}"), ""]
    text = result.get("text_probe")
    if text:
        flipped = "n/a" if text["flipped_to_pneumonia"] is None else f"{text['flipped_to_pneumonia']:.1%}"
        lines += ["Burned-in text probe: the shortcut probe (fitted on every image, balanced classes) on "
                  f"{text['normal_images']} NORMAL X-rays before and after exposure values, clock times and markers "
                  f"are burned into their corners: called PNEUMONIA {text['called_pneumonia_before']:.1%} before, "
                  f"{text['called_pneumonia_after']:.1%} after; {flipped} of those it called NORMAL flip; mean change "
                  f"of its probability {text['mean_probability_change']:+.3f} (`cxr stress` asks the same of a model).",
                  ""]
    lines += [f"**Warning:** {w}" for w in result["warnings"]]
    return "\n".join(lines) + "\n"
