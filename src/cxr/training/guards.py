"""The two out-of-distribution guards of a run, fitted on its training split and cut on its validation split:
the pixel guard (cxr.inference.ood) and the feature guard (cxr.inference.feature_guard)."""

from pathlib import Path

import numpy as np
import tensorflow as tf

from cxr.inference.feature_guard import fit_feature_guard
from cxr.inference.features import BATCH
from cxr.inference.ood import fit_for_run
from cxr.inference.population import population_features
from cxr.inference.predictor import Predictor
from cxr.inference.replay import Replay
from cxr.runs.info import GuardInfo, RunInfo


def with_guards(run_dir: Path, model, info: RunInfo, train_images, val_images, model_blocks=None) -> RunInfo:
    """`info` with both guards fitted and saved in `run_dir` (val_images: the unchanged validation split).
    `model_blocks`: the model's feature blocks of the two splits where they are at hand (frozen_base_blocks),
    else the model computes them."""
    pixel = fit_for_run(run_dir, train_images, val_images)
    if model_blocks is None:
        predictor = Predictor.from_model(model, info)
        model_blocks = [predictor.features(images) for images in (train_images, val_images)]
    train, val = ({**blocks, **population_features().cached(images)}
                  for blocks, images in zip(model_blocks, (train_images, val_images)))
    feature = fit_feature_guard(run_dir, train, val)
    return info.replace(guard=GuardInfo(**pixel), feature_guard=GuardInfo(**feature))


def frozen_base_blocks(model, outputs) -> dict:
    """The feature blocks Predictor.features gives, from a frozen base's stored outputs
    (cxr.training.frozen_features.BaseOutputs): only the head runs."""
    replay = Replay(model)
    penultimate = [replay.penultimate_from_base(tf.constant(outputs.features[i: i + BATCH]))
                   for i in range(0, len(outputs.features), BATCH)]
    return {"penultimate": np.concatenate([np.asarray(p, np.float32) for p in penultimate]),
            "intermediate": outputs.held_means}
