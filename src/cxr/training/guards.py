"""The two out-of-distribution guards of a run, fitted on its training split and cut on its validation split:
the pixel guard (cxr.inference.ood) and the feature guard (cxr.inference.feature_guard)."""

from pathlib import Path

from cxr.inference.feature_guard import fit_feature_guard
from cxr.inference.ood import fit_for_run
from cxr.inference.population import population_features
from cxr.inference.predictor import Predictor
from cxr.runs.info import GuardInfo, RunInfo


def with_guards(run_dir: Path, model, info: RunInfo, train_images, val_images) -> RunInfo:
    """`info` with both guards fitted and saved in `run_dir` (val_images: the unchanged validation split)."""
    pixel = fit_for_run(run_dir, train_images, val_images)
    predictor = Predictor.from_model(model, info)
    train, val = ({**predictor.features(images), **population_features().cached(images)}
                  for images in (train_images, val_images))
    feature = fit_feature_guard(run_dir, train, val)
    return info.replace(guard=GuardInfo(**pixel), feature_guard=GuardInfo(**feature))
