"""A training run's settings: one dataclass, written to config.json and read back for --resume."""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from cxr.data.preprocess import Preprocessing
from cxr.run import read_json


@dataclass
class TrainConfig:
    model: str = "cnn"
    data: str = ""
    out: str = ""
    split: str = "official"
    size: int = 128
    resize: str = "squash"  # squash | crop | pad: how an original becomes a square
    intensity: str = "none"  # none | equalize | clahe
    border: str = "none"  # none | crop: cut away black collimation borders
    epochs: int = 100
    patience: int = 20
    seed: int = 42  # weights, augmentation and shuffling
    split_seed: int = 42  # which patients go to which side; runs to ensemble must share it
    batch_size: int = 32
    learning_rate: float = 1e-3
    lr_decay: float = 0.9  # the learning rate is multiplied by this after every epoch
    label_smoothing: float = 0.0
    class_weight: str = "none"  # none | balanced
    precision: str = "auto"  # auto | float32 | mixed_bfloat16
    fine_tune: int = 0  # unfreeze the last N conv layers of a pretrained base after the head converges
    fine_tune_epochs: int = 10
    weights: str | None = None  # pretrained weights file (VGG19)
    fractions: tuple = (0.70, 0.15, 0.15)
    devices: str = "1"  # N or "all": MirroredStrategy over GPUs, or over N logical CPU devices
    framing: str = "none"  # none | targeted: random tight crops (more of NORMAL) and zoom-outs while training
    framed_validation: bool = True  # validate on the validation split plus copies cropped 10% and 20% a side

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(self.size, self.resize, self.intensity, self.border)


def config_from_run(run_dir: Path) -> TrainConfig:
    saved = read_json(Path(run_dir) / "config.json")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    saved.setdefault("lr_decay", 1.0)  # runs from before the schedule trained at a constant rate
    saved.setdefault("split_seed", saved.get("seed", TrainConfig.seed))  # runs from before the two seeds were apart
    saved.setdefault("framed_validation", False)  # runs from before it validated on unchanged images only
    cfg = TrainConfig(**{k: v for k, v in saved.items() if k in fields})
    cfg.fractions = tuple(cfg.fractions)
    return cfg
