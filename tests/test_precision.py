"""`--precision auto` picks bfloat16 only where this CPU runs it measurably faster, measured once per machine."""

import pytest

from cxr.inference import precision


@pytest.mark.parametrize("f32, bf16, chosen", [(0.040, 0.018, "mixed_bfloat16"),  # AMX: 2.2x faster
                                               (0.042, 0.056, "float32"),  # AVX-512 BF16 alone: slower
                                               (0.040, 0.036, "float32")])  # barely faster: float32 is exact
def test_auto_follows_the_measurement_and_measures_once(f32, bf16, chosen, tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_CACHE", str(tmp_path))
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)  # the run may be capped already: start uncapped
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    timed = []
    monkeypatch.setattr(precision, "_step_seconds", lambda policy: timed.append(policy) or
                        {"float32": f32, "mixed_bfloat16": bf16}[policy])
    assert precision.resolve_precision("auto") == chosen
    assert precision.resolve_precision("auto") == chosen
    assert sorted(timed) == ["float32", "mixed_bfloat16"]  # the second call read the cached measurement
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")  # another instruction set: measured again
    precision.resolve_precision("auto")
    assert len(timed) == 4


def test_a_cpu_without_bfloat16_computes_in_float32_without_measuring(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(precision, "_step_seconds", lambda policy: pytest.fail("measured"))
    assert precision.resolve_precision("auto") == "float32"
    assert precision.resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
