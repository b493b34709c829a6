"""`cxr ensemble RUN... --out DIR`: the mean logit of several runs, with test-time augmentation, saved as a
run folder of its own (one Keras model, so every path serves it like any other run).

The mean of the members' log-odds, not of their probabilities: on validation it ranked better unchanged and
under both framing crops, for every pair of the demo's members measured (docs/results.md, "The robust model").

Members must share their preprocessing and their split, so the ensemble's validation split, on which its
temperature and threshold are chosen, is one that no member trained on. Their sizes may differ by whole
factors: the ensemble takes the largest, and a member trained at 1/k of it sees that image averaged over k x k
blocks: area resampling, close to its own resampling of the original for the plain input (a 64 px VGG16 beside
a 128 px CNN: validation ROC AUC 0.9908 through the averaging against 0.9907 on its own input), and only an
approximation where the preprocessing equalizes or blanks a frame after resizing.
"""

import shutil
from pathlib import Path

from cxr import __version__
from cxr.data.dataset import load_part
from cxr.data.framing import framed_validation
from cxr.data.split import read_split_csv
from cxr.models import model_flops
from cxr.models.ensemble import build_ensemble
from cxr.runs.folder import RunError, load_run, save_model, write_json
from cxr.runs.info import Member
from cxr.runs.record import TrainingRecord
from cxr.runs.settings import config_from_run
from cxr.training.calibrate import calibrated_on_validation
from cxr.training.fit import summary_text
from cxr.training.guards import with_guards


def make_ensemble(run_dirs: list[Path], out: Path, tta: bool = True) -> Path:
    run_dirs, out = [Path(r) for r in run_dirs], Path(out)
    if out.exists() and any(out.iterdir()):
        raise RunError(f"{out} already holds a run; choose another --out")
    loaded = [load_run(r) for r in run_dirs]
    infos = [info for _, info in loaded]
    preps = [info.preprocessing for info in infos]
    sizes = [p.size for p in preps]
    size = max(sizes)
    if len({p.at_size(size) for p in preps}) != 1 or any(size % s for s in sizes):
        raise RunError("ensemble members must share their preprocessing, at sizes that divide the largest: "
                       + "; ".join(f"{r}: {p.to_dict()}" for r, p in zip(run_dirs, preps)))
    if len({(r / "split.csv").read_bytes() for r in run_dirs}) != 1:
        raise RunError("ensemble members must share their split (same data, split mode and seed)")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dirs[0] / "split.csv", out / "split.csv")
    first = sizes.index(size)  # the first member whose input is the ensemble's
    model = build_ensemble([m for m, _ in loaded], sizes, size, tta)
    save_model(model, out)
    (out / "summary.txt").write_text(summary_text(model))
    write_json(out / "config.json", {"model": "ensemble", "members": [str(r) for r in run_dirs], "tta": tta,
                                     "cxr_version": __version__})
    info = infos[first].replace(
        model="ensemble", members=tuple(Member(r, s) for r, s in zip(run_dirs, sizes)), tta=tta,
        combine="mean_logit", output="logit", calibration_on_validation=None,
        weights_note="mean logit of " + ", ".join(f"{r.name} ({i.weights_note or 'from scratch'})"
                                                  for r, i in zip(run_dirs, infos)),
        parameters=int(model.count_params()), trainable_parameters=0, flops_per_image=model_flops(model),
        trained_against=tuple(sorted({f for i in infos for f in i.trained_against})), guard=None)
    split = read_split_csv(out / "split.csv")
    (train_part, _, _), (unchanged_val, _, _) = (load_part(split.part(side), info.preprocessing)
                                                 for side in ("train", "val"))
    member = config_from_run(run_dirs[first])
    # Chosen on what the members were chosen on.
    val_part = framed_validation(unchanged_val, info.preprocessing) if member.framed_validation else unchanged_val
    robust = member.framing != "none" or member.acquisition != "none"
    info = calibrated_on_validation(model, info, val_part, worst_case=robust)
    with_guards(out, model, info, train_part.images, unchanged_val.images).write(out)
    trainings = [TrainingRecord.read(r) for r in run_dirs]
    TrainingRecord(split_note=trainings[0].split_note, images=trainings[0].images, skipped=trainings[0].skipped,
                   precision="+".join(dict.fromkeys(t.precision for t in trainings)),
                   members=tuple(str(r) for r in run_dirs),
                   train_seconds=float(sum(t.train_seconds for t in trainings))).write(out)
    return out
