"""A training run's settings: one dataclass, written to config.json and read back for --resume."""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from cxr.data.acquisition import ACQUISITION_MODES
from cxr.data.framing import FRAMING_MODES
from cxr.data.preprocess import BORDER_MODES, INTENSITY_MODES, RESIZE_MODES, Preprocessing
from cxr.runs.folder import read_json

PRECISIONS = ("auto", "float32", "mixed_bfloat16")  # --precision of every command that computes


def setting(default, help: str, flag: str | None = None, **argparse_options):
    """A TrainConfig field and its `cxr train` flag (help, choices, metavar, a flag name other than the field's):
    cxr.cli makes the parser from these, so the flags, config.json and `cxr sweep` keys cannot drift apart."""
    return field(default=default, metadata={"help": help, "flag": flag, **argparse_options})


@dataclass
class TrainConfig:
    # (The registry is not imported here: it imports Keras, which the ONNX path never loads.)
    model: str = setting("cnn", "cnn, cnn_aug, cnn_seed (from scratch); vgg16, vgg19, xception, densenet121, "
                         "mobilenetv2 (frozen ImageNet base); vgg16_e2e, densenet121_e2e, mobilenetv2_e2e (ImageNet, "
                         "every layer fine-tuned)")
    data: str = setting("", "Kaggle-layout folder (default: $CXR_DATA or the shared data)", path=True)
    out: str = setting("", "new run folder, e.g. runs/cnn", path=True)
    split: str = setting("official", "official: keep the given test folder; pooled: re-split everything 70/15/15",
                         choices=("official", "pooled"))
    size: int = setting(128, "image side in pixels (default 128)")
    resize: str = setting("squash", "how a non-square original becomes a square: squash (default), crop the "
                          "centre, pad", choices=RESIZE_MODES)
    intensity: str = setting("none", "per-image intensity normalisation: none, equalize (histogram), clahe, exact",
                             choices=INTENSITY_MODES)
    border: str = setting("none", "crop: cut away black collimation borders before resizing; frame: also blank "
                          "the outer 10%% of each side; thorax: cut to the lung fields' box", choices=BORDER_MODES)
    epochs: int = setting(100, "most epochs (early stopping usually ends sooner)")
    patience: int = setting(20, "early-stopping patience on validation loss")
    seed: int = setting(42, "random seed of weights, augmentation and shuffling (and of the split, by default)")
    # Runs to ensemble must share the split: which patients go to which side.
    split_seed: int = setting(42, "seed of the patient split alone (default: --seed)", cli_default=None)
    batch_size: int = setting(32, "images per batch (default 32)")
    learning_rate: float = setting(1e-3, "learning rate (Adam)", flag="--lr")
    lr_decay: float = setting(0.9, "multiply the learning rate by this after every epoch (default 0.9; 1: constant)")
    label_smoothing: float = setting(0.0, "e.g. 0.1: softer targets, calmer logits")
    class_weight: str = setting("none", "balanced: weigh each class by the inverse of its share",
                                choices=("none", "balanced"))
    precision: str = setting("auto", "auto: mixed_bfloat16 where the CPU has bfloat16 instructions, else float32",
                             choices=PRECISIONS)
    probe_first: bool = setting(False, "end-to-end models: first fit the head as a linear probe on the pretrained "
                                "features, then fine-tune every layer (LP-FT)", flag="--probe-first")
    ema: float = setting(0.0, "keep an exponential moving average of the weights with this momentum (e.g. 0.99); "
                         "validation, checkpoints and the saved model use the average", metavar="MOMENTUM")
    fine_tune: int = setting(0, "transfer models: then unfreeze the last N conv layers and train on at a low rate",
                             metavar="N")
    fine_tune_epochs: int = setting(10, "epochs of fine-tuning (default 10)")
    weights: str | None = setting(None, "pretrained weights file for the base (needed offline for vgg19)")
    fractions: tuple = (0.70, 0.15, 0.15)  # train, validation, test shares of the pooled split (no flag)
    devices: str = setting("1", "train on N devices with MirroredStrategy: the GPUs, or N logical CPU devices "
                           "(default 1)", metavar="N|all")
    framing: str = setting("none", "targeted: random tight crops (more often of NORMAL) and zoom-outs while "
                           "training, so how tightly an X-ray is framed carries no label", choices=FRAMING_MODES)
    acquisition: str = setting("none", "random: random processing curves, sharpening or blur, noise and burned-in "
                               "text while training, none of them tied to the label", choices=ACQUISITION_MODES)
    acquisition_skip: str = setting("", "families left out of --acquisition random (comma-separated: tone, sharpen, "
                                    "text, noise, blur): leave-one-family-out checks", metavar="FAMILY,...")
    framed_validation: bool = setting(True, "validate on unchanged images only (default: also on copies cropped "
                                      "10%% and 20%% a side and under held-out acquisition changes)",
                                      flag="--no-framed-validation")

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
