"""The result files a run holds beside model.json and training.json, typed: one reader and one writer each.

  metrics.json      `Metrics`      (cxr evaluate; written at the end of every training)
  stress.json       `Stress`       (cxr stress; stress_val.json is the validation side, which the choice reads)
  evidence.json     `Evidence`     (cxr evidence)
  site_check.json   `SiteCheck`    (cxr site-check, under site_checks/NAME/): cxr.runs.site_check_result

Each is a frozen dataclass read and written through cxr.runs.result_file.ResultFile: the rest of cxr reads
attributes, never keys, and a missing or malformed field is a RunError naming the file and the field. Fields
added since a file was first written have defaults, so every older file cxr wrote is still read; the one field
whose meaning changed (metrics.json's `precision`, see `Metrics`) is read in both meanings.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, ClassVar, Self

from pydantic import Field

from cxr.data.preprocess import Preprocessing
from cxr.runs.result_file import Interval, ResultFile

Shares = dict[str, float]  # a share of the evidence (or of the image) per region, cxr.evaluation.evidence.REGIONS


# --- metrics.json ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scores:
    """The binary metrics at one threshold (cxr.evaluation.metrics.binary_metrics)."""

    n: int
    threshold: float
    accuracy: float
    sensitivity: float
    specificity: float
    f1: float
    roc_auc: float
    confusion_matrix: tuple[tuple[int, int], tuple[int, int]]  # [[tn, fp], [fn, tp]]
    precision: float = float("nan")  # positive predictive value
    pr_auc: float = float("nan")


@dataclass(frozen=True)
class Calibration:
    brier: float
    ece: float


@dataclass(frozen=True)
class Metrics(Scores, ResultFile):
    """metrics.json: a run on its test split (or on a labelled folder) at its threshold, with 95% intervals.

    Until 2026-12-07 `precision` held the compute precision ("float32"), which overwrote the positive predictive
    value; it is `compute_precision` now, and an older file's predictive value is read off its confusion matrix.
    """

    FILE: ClassVar[str] = "metrics.json"

    threshold_rule: str = "not recorded"
    at_half: Annotated[Scores | None, Field(alias="at_0.5")] = None  # the same at threshold 0.5
    ci95: dict[str, Interval] = field(default_factory=dict)
    ci95_resamples: str = "images"  # or "patients"
    calibration: Calibration | None = None
    ood_flagged: dict[str, float | None] = field(default_factory=dict)  # share flagged by each guard
    model: str = ""
    data: str = ""
    predict_images_per_s: float | None = None
    compute_precision: str = "float32"
    skipped: tuple[tuple[str, str], ...] = ()

    @classmethod
    def _upgrade(cls, raw: dict) -> dict:
        if isinstance(raw.get("precision"), str):
            raw["compute_precision"] = raw.pop("precision")
            (_, fp), (_, tp) = raw.get("confusion_matrix") or ((0, 0), (0, 0))
            raw["precision"] = tp / (tp + fp) if tp + fp else 0.0
        return raw

    def with_interval(self, name: str) -> str:
        """A metric with its 95% interval, as every table of cxr shows it."""
        lo, hi = self.ci95[name]
        return f"{getattr(self, name):.3f} [{lo:.3f}, {hi:.3f}]"


# --- stress.json, stress_val.json -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Flips:
    """Among NORMAL X-rays called NORMAL unchanged: the share a change turns into PNEUMONIA calls."""

    normal_called_normal: int
    flipped_to_pneumonia: float | None
    mean_probability_change: float | None


@dataclass(frozen=True)
class TextProbe(Flips):
    change: str = "burned_in_text"


@dataclass(frozen=True)
class Condition:
    """The side's images unchanged (`baseline`) or under one change, at the run's threshold."""

    roc_auc: float
    accuracy: float
    sensitivity: float
    specificity: float
    kind: str = ""  # photometric or geometric; "" unchanged
    roc_auc_change: float | None = None  # against the unchanged images
    normal_flipped: Flips | None = None  # older results lack it

    @property
    def balanced_accuracy(self) -> float:
        return (self.sensitivity + self.specificity) / 2


@dataclass(frozen=True)
class Stress(ResultFile):
    """stress.json (the test side) or stress_val.json (validation): a run under acquisition-like changes."""

    FILE: ClassVar[str] = "stress.json"

    run: str
    images: int
    threshold: float
    baseline: Condition
    perturbations: dict[str, Condition]
    shortcut_probe_auc: float
    side: str = "test"
    sampled: bool = False
    precision: str = "float32"
    preprocessing: Preprocessing | None = None
    text_probe: TextProbe | None = None
    worst_photometric_auc_change: float | None = None  # None: no photometric change run
    mean_roc_auc: float | None = None

    @staticmethod
    def path(run_dir: Path, side: str = "test") -> Path:
        return Path(run_dir) / ("stress.json" if side == "test" else f"stress_{side}.json")

    @classmethod
    def read_side(cls, run_dir: Path, side: str = "test") -> Self:
        return cls.read(cls.path(run_dir, side))


# --- evidence.json --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemberMap:
    """Which layer of an ensemble member the evidence maps read."""

    run: str
    layer: str
    grid: tuple[int, int]


@dataclass(frozen=True)
class CallShares:
    images: int
    shares: Shares | None  # None: no X-ray got this call, or every map was blank


@dataclass(frozen=True)
class Evidence(ResultFile):
    """evidence.json (validation) or evidence_FOLDER.json: where a run's evidence maps put their weight."""

    FILE: ClassVar[str] = "evidence.json"

    run: str
    data: str
    images: int
    method: str
    grid: tuple[int, int]
    by_class: dict[str, Shares | None]
    layer: str | None = None  # None for an ensemble: each member's in `members`
    members: tuple[MemberMap, ...] = ()
    regions: dict[str, str] = field(default_factory=dict)  # what each region is
    lung_box_found: float = 0.0
    blank_maps: int = 0
    area: Shares | None = None  # each region's share of the image: what evidence spread evenly would give
    by_call: dict[str, CallShares] = field(default_factory=dict)
