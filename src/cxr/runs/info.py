"""What a run says about its model (model.json), typed: one object, one reader, one writer.

`RunInfo.from_dict` owns every default and every older format cxr ever wrote (as `config_from_run` does for
the settings), so the rest of cxr reads attributes and never a key; a missing or malformed field becomes a
RunError naming the file and the field. The ONNX metadata (model.onnx.json) is a view of the same object
with the export's own fields added, so both engines answer with the same facts.

Formats: 1 is everything written before `format_version` was (from the first runs, with no preprocessing,
temperature or rule stored, to ensembles that named their members by where they were made); 2 adds
`format_version`, members as objects and the guard under `guard`.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from cxr import CLASSES, __version__
from cxr.data.preprocess import Preprocessing
from cxr.errors import RunError
from cxr.files import read_json, write_json

FORMAT_VERSION = 2
INFO_FILE, ONNX_META = "model.json", "model.onnx.json"
UNKNOWN_RULE = "not recorded (the run was saved before cxr stored its rule)"
INPUT_NOTE = "grayscale uint8 0..255 after the preprocessing above; the model normalises itself"
ONNX_ONLY = ("format", "input", "input_note", "output", "output_note", "onnx_sha256", "weights_sha256")


@dataclass(frozen=True)
class Member:
    """An ensemble member: its run folder and the input size it takes."""

    run: Path
    size: int


@dataclass(frozen=True)
class GuardInfo:
    """The out-of-distribution guard saved beside the model (cxr.inference.ood)."""

    file: str
    cutoff: float
    rule: str
    validation_flagged: float | None = None


@dataclass(frozen=True)
class RunInfo:
    model: str
    preprocessing: Preprocessing
    classes: tuple[str, ...] = CLASSES
    threshold: float = 0.5
    threshold_rule: str = UNKNOWN_RULE
    temperature: float = 1.0
    weights_note: str = ""
    parameters: int | None = None
    trainable_parameters: int | None = None
    flops_per_image: int | None = None
    trained_against: tuple[str, ...] = ()  # training families of augmentation (cxr.evaluation.selection)
    calibration_on_validation: dict | None = None
    guard: GuardInfo | None = None  # the pixel guard (cxr.inference.ood)
    feature_guard: GuardInfo | None = None  # the guard on the model's features (cxr.inference.feature_guard)
    members: tuple[Member, ...] = ()  # an ensemble's; () for any other run
    tta: bool = False
    combine: str = "mean_logit"  # how an ensemble joins its members; older ones averaged probabilities
    output: str = "logit"  # what the saved model (or its ONNX export) gives before the sigmoid and temperature
    cxr_version: str = __version__
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict, compare=False)  # the ONNX view's own fields, when read from it

    @property
    def size(self) -> int:
        return self.preprocessing.size

    @property
    def is_ensemble(self) -> bool:
        return bool(self.members)

    @property
    def outputs_logits(self) -> bool:
        return self.output == "logit"

    def replace(self, **changes) -> "RunInfo":
        return dataclasses.replace(self, **changes)

    # --- reading ---------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: dict, source: Path, run_dir: Path | None = None) -> "RunInfo":
        """From the JSON of model.json or model.onnx.json, in any format cxr wrote; `source` names the file
        in errors, `run_dir` anchors an ensemble's members."""
        def need(key):
            if key not in raw:
                raise RunError(f"{source}: field {key!r} is missing")
            return raw[key]

        try:
            prep = Preprocessing(**raw["preprocessing"]) if "preprocessing" in raw else Preprocessing(int(need("size")))
            members = _members(raw, prep.size, run_dir)
            is_ensemble = bool(members)
            # Ensembles made before their members' logits were averaged averaged probabilities, and so did every
            # ONNX export written before the engine applied the sigmoid itself.
            combine = raw.get("combine", "mean_probability" if is_ensemble else "mean_logit")
            output = raw.get("output", "probability" if ("onnx_sha256" in raw or combine != "mean_logit") else "logit")
            guard, feature_guard = raw.get("guard", raw.get("ood")), raw.get("feature_guard")
            info = cls(
                model=str(need("model")), preprocessing=prep, classes=tuple(raw.get("classes", CLASSES)),
                threshold=float(raw.get("threshold") if raw.get("threshold") is not None else 0.5),
                threshold_rule=str(raw.get("threshold_rule") or UNKNOWN_RULE),
                temperature=float(raw.get("temperature") or 1.0), weights_note=str(raw.get("weights_note") or ""),
                parameters=raw.get("parameters"), trainable_parameters=raw.get("trainable_parameters"),
                flops_per_image=raw.get("flops_per_image"), trained_against=tuple(raw.get("trained_against", ())),
                calibration_on_validation=raw.get("calibration_on_validation"),
                guard=None if guard is None else GuardInfo(**guard),
                feature_guard=None if feature_guard is None else GuardInfo(**feature_guard), members=members,
                tta=bool(raw.get("tta", False)),
                combine=combine, output=output, cxr_version=str(raw.get("cxr_version", "unknown")),
                format_version=int(raw.get("format_version", 1)),
                extra={k: raw[k] for k in ONNX_ONLY if k in raw})
        except RunError:
            raise
        except (TypeError, ValueError, KeyError) as exc:
            raise RunError(f"{source}: malformed run metadata ({type(exc).__name__}: {exc})") from None
        if not 0.0 <= info.threshold <= 1.0 or len(info.classes) != 2:
            raise RunError(f"{source}: invalid threshold {info.threshold} or labels {list(info.classes)}")
        return info

    @classmethod
    def read(cls, run_dir: Path) -> "RunInfo":
        """A run folder's model.json."""
        path = Path(run_dir) / INFO_FILE
        return cls.from_dict(read_json(path), path, Path(run_dir))

    @classmethod
    def read_onnx(cls, run_dir: Path) -> "RunInfo":
        """A run folder's model.onnx.json (the export's view; its own fields in `extra`)."""
        path = Path(run_dir) / ONNX_META
        info = cls.from_dict(read_json(path), path, Path(run_dir))
        if "onnx_sha256" not in info.extra:
            raise RunError(f"{path}: field 'onnx_sha256' is missing")
        return info

    # --- writing ---------------------------------------------------------------------------------------------
    def to_dict(self, run_dir: Path | None = None) -> dict:
        """model.json's content; members are stored relative to `run_dir`, so a runs folder can move."""
        import os

        out = {"format_version": FORMAT_VERSION, "model": self.model, "size": self.size,
               "classes": list(self.classes), "preprocessing": self.preprocessing.to_dict(), "input": INPUT_NOTE,
               "threshold": self.threshold, "threshold_rule": self.threshold_rule, "temperature": self.temperature,
               "weights_note": self.weights_note, "parameters": self.parameters,
               "trainable_parameters": self.trainable_parameters, "flops_per_image": self.flops_per_image,
               "trained_against": list(self.trained_against),
               "calibration_on_validation": self.calibration_on_validation,
               "guard": None if self.guard is None else dataclasses.asdict(self.guard),
               "feature_guard": None if self.feature_guard is None else dataclasses.asdict(self.feature_guard),
               "output": self.output, "cxr_version": self.cxr_version}
        if self.is_ensemble:
            anchor = Path(run_dir).resolve() if run_dir is not None else None
            out.update(combine=self.combine, tta=self.tta, members=[
                {"run": os.path.relpath(m.run.resolve(), anchor) if anchor else str(m.run), "size": m.size}
                for m in self.members])
        return out

    def write(self, run_dir: Path) -> Path:
        """The one writer of model.json."""
        path = Path(run_dir) / INFO_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, self.to_dict(run_dir))
        return path

    def write_onnx(self, run_dir: Path, onnx_sha256: str, weights_sha256: str) -> Path:
        """The one writer of model.onnx.json: this object's fields plus what another program needs to feed the
        exported graph."""
        size = self.size
        path = Path(run_dir) / ONNX_META
        write_json(path, {
            **self.to_dict(run_dir), "format": "onnx",
            "input": {"name": "image", "shape": ["n", size, size, 1], "dtype": "float32"},
            "input_note": "grayscale uint8 values 0..255 after `preprocessing` (cxr.data.preprocess), as float32",
            "output_note": ("uncalibrated logit z of PNEUMONIA, shape (n, 1); calibrated = sigmoid(z / temperature)"
                            if self.outputs_logits else "uncalibrated probability p of PNEUMONIA, shape (n, 1); "
                            "calibrated = sigmoid(logit(p) / temperature)"),
            "onnx_sha256": onnx_sha256, "weights_sha256": weights_sha256})
        return path


def _members(raw: dict, size: int, run_dir: Path | None) -> tuple[Member, ...]:
    """An ensemble's members in any format: objects relative to the ensemble (2); paths as given at creation,
    then folders relative to the ensemble beside them (1), with sizes from when they could differ."""
    stored = raw.get("members") or []
    if stored and isinstance(stored[0], dict):
        anchor = Path(run_dir) if run_dir is not None else Path()
        return tuple(Member((anchor / m["run"]).resolve(), int(m["size"])) for m in stored)
    paths = [Path(m) for m in stored]
    if run_dir is not None and "member_dirs" in raw:
        paths = [Path(run_dir) / m for m in raw["member_dirs"]]
    sizes = raw.get("member_sizes", [size] * len(paths))
    return tuple(Member(p.resolve(), int(s)) for p, s in zip(paths, sizes))
