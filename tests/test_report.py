"""The comparison report from real runs: one table, figures, and a self-contained HTML page."""

import json
import re

import pytest

from conftest import run_cxr, writable_copy

pytestmark = pytest.mark.integration


def test_compare_writes_markdown_and_self_contained_html(trained_run, tmp_path):
    first, second = (writable_copy(trained_run, tmp_path / name) for name in ("cnn", "cnn_copy"))
    config = json.loads((second / "config.json").read_text())
    (second / "config.json").write_text(json.dumps({**config, "seed": config["seed"] + 1}))  # as if another seed
    out = tmp_path / "report"
    # Only runs built from pretrained networks are served, unless the user asks for a from-scratch one.
    refused = run_cxr("compare", first, second, "--out", out)
    assert refused.returncode == 1 and "no run built only from pretrained networks" in refused.stderr
    assert "cnn: cnn from scratch" in refused.stderr and "--serve-from-scratch" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    # The choice reads validation stress results.
    refused = run_cxr("compare", first, second, "--out", out, "--serve-from-scratch")
    assert refused.returncode == 1 and "cxr stress --changes selection" in refused.stderr
    stressed = run_cxr("stress", "--changes", "selection", "--images", 12, first, second)
    assert stressed.returncode == 0, stressed.stderr[-2000:]
    result = run_cxr("compare", first, second, "--out", out, "--serve-from-scratch")
    assert result.returncode == 0, result.stderr[-2000:]

    table = (out / "table.md").read_text()
    assert table.count("\n") == 4  # header, rule, one row per run
    assert "cnn_copy" in table and "roc_auc" in table
    html = (out / "report.html").read_text()
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 4  # curves, confusion matrices, ROC, stress
    assert not re.search(r'(src|href)="https?://', html)  # opens offline
    assert "Model summaries" in html and "conv3" in html
    for name in ("training_curves", "confusion_matrices", "roc_curves"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
    assert "report.md" not in result.stderr
    assert (out / "best_run.txt").read_text().strip() in (str(first), str(second))
    assert (first / "MODEL_CARD.md").is_file() and (first / "stress_val.json").is_file()
    rows = json.loads((out / "comparison.json").read_text())
    assert [r["model"] for r in rows] == ["cnn", "cnn"]
    # The same recipe with two seeds: the report gives their spread on validation.
    report = (out / "report.md").read_text()
    seeds = report[report.index("## Seeds"):].splitlines()[6]
    worst = sorted(r["validation_selection"]["worst_balanced_accuracy"] for r in rows)
    assert seeds.startswith("| cnn, cnn_copy | 2 | ") and f"{worst[0]:.3f}-{worst[1]:.3f}" in seeds
