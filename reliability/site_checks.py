"""False alarms and detections of `cxr site-check`, on a run of the full training batch.

False alarms: the run's held-out X-rays (validation and carved test, unseen in training) split into two
halves by patient, 20 times at random; one half is checked against the other and must come back `same` in at
least 19 draws (the tests hold a family-wise 1%). Detections: the carved test split changed as another site
would change it (another processing curve, resolution loss, burned-in text, a much tighter framing) and a
folder of images that are not X-rays, each checked against the validation split, must come back `shifted` or
`different`.
"""

from pathlib import Path

import numpy as np
from common import CHEST_XRAY, ROOT, cxr, env_with

DRAWS, MIN_SAME = 20, 19
SHIFTS = ("processing_s_curve", "resolution_loss", "burned_in_text", "framing_cropped_25%", "not_xrays")


def _run(work: Path, env: dict) -> Path:
    """The run `make demo` serves where there is one; else a quick CNN on the full training batch."""
    served = ROOT / "reports" / "demo" / "best_run.txt"
    if served.exists() and Path(served.read_text().strip()).is_dir():
        return Path(served.read_text().strip())
    run = work / "site_run"
    trained = cxr("train", "--model", "cnn", "--data", CHEST_XRAY, "--out", run, "--size", 64, "--epochs", 3, env=env)
    if trained.returncode != 0:
        raise RuntimeError(f"could not train the site-check run:\n{trained.stderr[-2000:]}")
    return run


def _changed(predictor, records, change) -> np.ndarray:
    from cxr.data.images import read_grayscale

    return np.stack([predictor.preprocessing.apply(change(read_grayscale(Path(r.path).read_bytes(),
                                                                       predictor.size))) for r in records])


def check(work: Path) -> dict:
    from ood_check import non_xrays

    from cxr.data.acquisition import VALIDATION_CHANGES
    from cxr.data.framing import crop_borders
    from cxr.data.split import read_split_csv
    from cxr.evaluation.site_check import Batch, compare_batches
    from cxr.inference.predictor import Predictor

    run = _run(work, env_with())
    predictor = Predictor(run)
    split = read_split_csv(run / "split.csv")
    held = split.part("val") + split.part("test")
    loaded = predictor.load([r.path for r in held])
    label_of = {r.path: r.label for r in held}
    pool = Batch.measured(predictor, loaded.images, loaded.paths, [label_of[p] for p in loaded.paths])
    threshold, prevalence = predictor.threshold, float(np.mean([r.label for r in split.part("train")]))
    patients = sorted(set(pool.groups))
    verdicts = []
    for draw in range(DRAWS):
        rng = np.random.default_rng(draw)
        half = set(rng.permutation(patients)[: len(patients) // 2])
        first = [i for i, g in enumerate(pool.groups) if g in half]
        second = [i for i, g in enumerate(pool.groups) if g not in half]
        reference = pool.subset(first)
        verdicts.append(compare_batches(reference, pool.subset(second), threshold, prevalence,
                                        float(reference.flagged.mean()))["verdict"])

    val_paths = {Path(r.path) for r in split.part("val")}
    val_rows = [i for i, p in enumerate(pool.paths) if Path(p) in val_paths]
    reference = pool.subset(val_rows)
    test = split.part("test")
    changes = {"processing_s_curve": VALIDATION_CHANGES["processing_s_curve"],
               "resolution_loss": VALIDATION_CHANGES["resolution_loss"],
               "burned_in_text": VALIDATION_CHANGES["burned_in_text"],
               "framing_cropped_25%": lambda im: crop_borders(im, 0.25)}
    shifted = {}
    for name in SHIFTS:
        if name == "not_xrays":
            images = np.stack([predictor.decode(data) for data in non_xrays().values()])
            paths = list(non_xrays())
        else:
            images, paths = _changed(predictor, test, changes[name]), [r.path for r in test]
        result = compare_batches(reference, Batch.measured(predictor, images, paths), threshold, prevalence,
                                 float(reference.flagged.mean()))
        shifted[name] = {"verdict": result["verdict"], "why": result["why"],
                         "domain_classifier_auc": round(result["feature_shift"]["domain_classifier_auc"], 3),
                         "guard_rate": round(result["guard_rate"], 3)}
    same = verdicts.count("same")
    detected = sum(s["verdict"] in ("shifted", "different") for s in shifted.values())
    return {"passed": same >= MIN_SAME and detected == len(SHIFTS), "run": str(run), "draws": DRAWS,
            "same": same, "verdicts": verdicts, "shifts": shifted, "detected": detected}
