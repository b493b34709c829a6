"""From a trained run to probabilities: the one Predictor (`predictor`), its temperature, precision and
out-of-distribution guards, prediction on files (`batch`) and on Ray (`ray_batch`), ONNX export, evidence maps
(HiResCAM)."""
