"""site_check.json, typed (`cxr site-check`, under the run's site_checks/NAME/): a batch of X-rays against the run's
validation split, every test, the verdict and the accuracy estimates (cxr.evaluation.site_check)."""

from dataclasses import dataclass
from typing import ClassVar

from cxr.runs.result_file import Interval, ResultFile


@dataclass(frozen=True)
class FeatureShift:
    domain_classifier_auc: float
    domain_classifier_p_value: float
    mmd2: float
    mmd_p_value: float


@dataclass(frozen=True)
class OutputShift:
    ks: float
    ks_p_value: float
    predicted_prevalence: float
    validation_predicted_prevalence: float
    training_prevalence: float


@dataclass(frozen=True)
class StatisticShift:
    """One acquisition statistic of the model's input, validation against the folder."""

    validation_median: float
    folder_median: float
    ks: float
    p_value: float


@dataclass(frozen=True)
class MethodEstimate:
    estimate: float
    interval: Interval
    validation_rmse: float  # leave-one-family-out, on validation's held-out families


@dataclass(frozen=True)
class FamilyCheck:
    """One held-out validation family: its measured accuracy and what each estimate read off for it."""

    condition: str
    measured: float
    atc: float
    agreement_rate: float
    agreement: float


@dataclass(frozen=True)
class AgreementLine:
    slope: float
    intercept: float


@dataclass(frozen=True)
class Estimate:
    """The accuracy estimates of cxr.evaluation.accuracy_estimate, the lower one leading."""

    lead: str
    estimated_accuracy: float
    interval: Interval
    methods: dict[str, MethodEstimate]
    agreement_rate: float
    line: AgreementLine
    note: str
    validation: tuple[FamilyCheck, ...]


@dataclass(frozen=True)
class SiteCheck(ResultFile):
    """site_check.json: a batch of X-rays against the run's validation split, and the verdict."""

    FILE: ClassVar[str] = "site_check.json"

    folder: str
    run: str
    verdict: str  # same, shifted or different
    why: str
    images: int
    validation_images: int
    guard_rate: float
    validation_guard_rate: float
    alpha: float
    feature_shift: FeatureShift
    output_shift: OutputShift
    acquisition: dict[str, StatisticShift]
    p_values: dict[str, float]
    estimated_accuracy: float | None
    estimate_note: str
    estimate: Estimate | None = None  # None: ATC alone, or no estimate under this shift
    accuracy: float | None = None  # measured, where the batch has labels
    skipped: tuple[tuple[str, str], ...] = ()
