"""The temperature and the decision threshold of a trained model, both chosen on the validation split."""

import numpy as np

from cxr.evaluation.metrics import (
    FRAMED_THRESHOLD_RULE,
    THRESHOLD_RULE,
    calibration,
    choose_threshold,
    choose_threshold_worst_framing,
)
from cxr.inference.predictor import Predictor
from cxr.inference.temperature import apply_temperature, fit_temperature
from cxr.runs.info import RunInfo

POOLED = ", pooled with its copies under the validation conditions (framings and acquisition changes)"


def calibrated_on_validation(model, info: RunInfo, val_part, worst_case: bool = False,
                             raw: np.ndarray | None = None) -> RunInfo:
    """`info` with the temperature fitted on validation, and the threshold chosen on the calibrated
    probabilities: on the worst validation condition where `worst_case` (a model trained to ignore the shifts
    validation shows) and validation has changed copies, else under the screening rule. A model that reads
    framing as pneumonia is near chance on some framing at every threshold: the worst-case rule would then
    choose nothing meaningful. `raw`: the model's probabilities on the validation images where known already."""
    if raw is None:
        raw = Predictor.from_model(model, info.replace(temperature=1.0)).predict(val_part.images)
    temperature = fit_temperature(val_part.labels, raw)
    calibrated = apply_temperature(raw, temperature)
    if worst_case and val_part.framings is not None:
        threshold = choose_threshold_worst_framing(val_part.labels, calibrated, val_part.framings)
        rule = FRAMED_THRESHOLD_RULE
    else:
        threshold = choose_threshold(val_part.labels, calibrated)
        rule = THRESHOLD_RULE + (POOLED if val_part.framings is not None else "")
    return info.replace(temperature=float(temperature), threshold=float(threshold), threshold_rule=rule,
                        calibration_on_validation={"before": calibration(val_part.labels, raw),
                                                   "after": calibration(val_part.labels, calibrated)})
