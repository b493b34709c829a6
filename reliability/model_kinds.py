"""Every model kind a user can make, trained briefly, then used from new processes through every surface
(evaluate, predict with Keras and ONNX, stress, Ray, the service): the class of bug where a saved model
cannot be loaded, exported or served outside the process that trained it."""

from pathlib import Path

from cxr.testing import make_run, round_trip_kinds, use_run


def check(subset: Path, work: Path, env: dict) -> dict:
    kinds = {}
    for kind in round_trip_kinds():
        try:
            run = make_run(kind, subset, work, env)
            kinds[kind] = {"passed": True, "steps": use_run(run, work / f"{kind}-use", env)}
        except Exception as exc:  # one broken kind is reported with the rest
            kinds[kind] = {"passed": False, "error": f"{type(exc).__name__}: {str(exc)[-1500:]}"}
    return {"passed": all(k["passed"] for k in kinds.values()), "kinds_tried": sorted(kinds), "kinds": kinds}
