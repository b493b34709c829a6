"""One source of training settings: `cxr train`'s flags are made from TrainConfig, so they cannot drift."""

import dataclasses

from cxr.cli import parser
from cxr.cli.commands import training_config
from cxr.runs.settings import TrainConfig


def test_the_flags_without_options_give_the_default_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_DATA", str(tmp_path / "data"))
    cfg = training_config(parser().parse_args(["train", "--out", str(tmp_path / "run")]))
    assert cfg == TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"))


def test_every_setting_with_a_flag_reaches_the_config(tmp_path):
    args = parser().parse_args([
        "train", "--out", str(tmp_path / "run"), "--data", str(tmp_path), "--model", "cnn_aug", "--size", "64",
        "--lr", "0.01", "--split-seed", "7", "--seed", "3", "--framing", "targeted", "--no-framed-validation",
        "--weights", "w.h5", "--devices", "all"])
    cfg = training_config(args)
    assert (cfg.model, cfg.size, cfg.learning_rate, cfg.split_seed, cfg.seed) == ("cnn_aug", 64, 0.01, 7, 3)
    assert (cfg.framing, cfg.framed_validation, cfg.weights, cfg.devices) == ("targeted", False, "w.h5", "all")
    args = parser().parse_args(["train", "--out", "r", "--data", str(tmp_path), "--seed", "5"])
    assert training_config(args).split_seed == 5
    flagged = {f.name for f in dataclasses.fields(TrainConfig) if "help" in f.metadata}
    assert flagged == {f.name for f in dataclasses.fields(TrainConfig)} - {"fractions"}
