"""The robust fine-tuning options: LP-FT's linear probe as the starting head, and weight averaging (EMA)."""

import json

import keras
import numpy as np
import pytest

from conftest import run_cxr
from cxr.models import build
from cxr.training.probe_head import fit_head_on_features


def test_the_probe_head_is_the_logistic_regression_on_the_pooled_features():
    """After the probe, the model itself calls the images as the fitted regression does (the head is set, with
    the standardisation folded in), and it separates the planted classes."""
    keras.utils.set_random_seed(0)
    model = build("vgg16_e2e", 32, pretrained=False).model
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 2
    images = rng.uniform(0, 120, (40, 32, 32, 1)).astype("float32")
    images[labels == 1, 10:22, 10:22] += 120  # a bright square in one class
    probed = fit_head_on_features(model, images, labels)
    np.testing.assert_allclose(model.predict(images, verbose=0).ravel(), probed, atol=1e-4)
    assert ((probed > 0.5) == labels).mean() >= 0.9


def test_the_probe_refuses_a_model_without_a_one_unit_head_on_pooled_features():
    with pytest.raises(ValueError, match="cnn: no pooled features"):
        fit_head_on_features(build("cnn", 64).model, np.zeros((4, 64, 64, 1), "float32"), np.array([0, 1, 0, 1]))


@pytest.mark.integration
def test_lp_ft_with_weight_averaging_trains_a_run_that_records_both(real_subset, tmp_path):
    run = tmp_path / "mobile"
    result = run_cxr("train", "--model", "mobilenetv2_e2e", "--data", real_subset, "--out", run, "--epochs", 2,
                     "--size", 48, "--split", "pooled", "--probe-first", "--ema", 0.9, quiet=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "linear probe on 1280 pooled features (C=" in result.stderr + result.stdout
    config = json.loads((run / "config.json").read_text())
    assert config["probe_first"] is True and config["ema"] == 0.9
    refused = run_cxr("train", "--model", "vgg16", "--data", real_subset, "--out", tmp_path / "frozen",
                      "--epochs", 1, "--size", 48, "--probe-first")
    assert refused.returncode != 0 and "--probe-first is for end-to-end models" in refused.stderr
