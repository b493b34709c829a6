"""site_check.md: the site check's verdict, its tests and its accuracy estimates, for a reader."""

from cxr.runs.site_check_result import Estimate, SiteCheck


def estimate_lines(e: Estimate | None) -> list[str]:
    """The two accuracy estimates with their intervals, and how each did on validation's held-out families."""
    if e is None:
        return []
    lines = ["| estimate | accuracy | 95% interval | error on validation's families (RMSE) |", "|---|---|---|---|"]
    for method, m in e.methods.items():
        lead = " (leads)" if method == e.lead else ""
        lines.append(f"| {method}{lead} | {m.estimate:.3f} | {m.interval[0]:.3f} to {m.interval[1]:.3f} "
                     f"| {m.validation_rmse:.3f} |")
    lines += ["", f"The model agrees with the second opinion (a frozen ImageNet network's features, a linear "
              f"classifier) on {e.agreement_rate:.1%} of the folder. Checked on validation, each held-out "
              "family left out of the agreement line it is read from:", "",
              "| validation condition | measured | ATC | agreement rate | agreement estimate |",
              "|---|---|---|---|---|"]
    lines += [f"| {c.condition} | {c.measured:.3f} | {c.atc:.3f} | {c.agreement_rate:.3f} | {c.agreement:.3f} |"
              for c in e.validation]
    return lines + [""]


def site_check_markdown(r: SiteCheck) -> str:
    f, o = r.feature_shift, r.output_shift
    estimate = "n/a" if r.estimated_accuracy is None else f"{r.estimated_accuracy:.3f}"
    lines = [f"# Site check: {r.folder} against {r.run}", "", f"**Verdict: {r.verdict}**: {r.why}.", "",
             f"{r.images} X-rays in the folder ({len(r.skipped)} skipped), {r.validation_images} in the "
             "run's validation split (the reference: the training batch, unseen in training).", "",
             "| test | value | p-value |", "|---|---|---|",
             f"| domain classifier on the model's penultimate features (ROC AUC) | {f.domain_classifier_auc:.3f} "
             f"| {f.domain_classifier_p_value:.2g} |",
             f"| MMD² on the model's features | {f.mmd2:.4f} | {f.mmd_p_value:.2g} |",
             f"| KS on the calibrated probabilities | {o.ks:.3f} | {o.ks_p_value:.2g} |",
             f"| X-rays the guards flag | {r.guard_rate:.1%} (validation {r.validation_guard_rate:.1%}) "
             f"| {r.p_values['guard rate']:.2g} |", "",
             f"Predicted PNEUMONIA: {o.predicted_prevalence:.1%} of the folder, "
             f"{o.validation_predicted_prevalence:.1%} of validation (training prevalence "
             f"{o.training_prevalence:.1%}).", "",
             f"Estimated accuracy: {estimate} ({r.estimate_note})"
             + ("" if r.accuracy is None else f"; measured on the folder's labels: {r.accuracy:.3f}") + ".", "",
             *estimate_lines(r.estimate),
             "| acquisition statistic (model input) | validation median | folder median | KS | p-value |",
             "|---|---|---|---|---|"]
    lines += [f"| {name} | {s.validation_median:.3g} | {s.folder_median:.3g} | {s.ks:.2f} | {s.p_value:.2g} |"
              for name, s in r.acquisition.items()]
    lines += ["", "What it cannot do: prove the model right on this site. Only a labelled sample of the site's "
              "X-rays can; `same` means no test found a difference, not that the answers are correct.", ""]
    return "\n".join(lines)
