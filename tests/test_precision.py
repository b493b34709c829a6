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
    monkeypatch.setattr(precision, "_step_seconds", lambda policy, kind: timed.append(policy) or
                        {"float32": f32, "mixed_bfloat16": bf16}[policy])
    assert precision.resolve_precision("auto") == chosen
    assert precision.resolve_precision("auto") == chosen
    assert sorted(timed) == ["float32", "mixed_bfloat16"]  # the second call read the cached measurement
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")  # another instruction set: measured again
    precision.resolve_precision("auto")
    assert len(timed) == 4


def test_a_cpu_without_bfloat16_computes_in_float32_without_measuring(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(precision, "_step_seconds", lambda policy, kind: pytest.fail("measured"))
    assert precision.resolve_precision("auto") == "float32"
    assert precision.resolve_precision("mixed_bfloat16") == "mixed_bfloat16"


def test_a_chosen_precision_stands_for_every_process_sharing_the_cache(tmp_path, monkeypatch):
    """Where bfloat16 is only somewhat faster, a measurement under load can come out either way: the first choice
    written stays, and a process keeps the one it read, so two Predictors of one run compute alike."""
    import json

    monkeypatch.setenv("CXR_CACHE", str(tmp_path))
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    cache = tmp_path / "precision.json"
    other = {"policy": "float32", "float32_step_s": 0.040, "mixed_bfloat16_step_s": 0.036}

    def measured_while_another_process_chose(policy, kind):
        if policy == "mixed_bfloat16":  # meanwhile another process measured float32 as the faster, and wrote it
            cache.write_text(json.dumps({precision.machine_key(): other}))
        return {"float32": 0.040, "mixed_bfloat16": 0.010}[policy]

    monkeypatch.setattr(precision, "_step_seconds", measured_while_another_process_chose)
    assert precision.resolve_precision("auto") == "float32"  # the other process's choice, not this measurement
    assert json.loads(cache.read_text()) == {precision.machine_key(): other}
    cache.write_text("{}")  # the file changes later: this process keeps what it chose
    assert precision.resolve_precision("auto") == "float32"


def test_depthwise_convolutions_are_timed_apart_and_each_architecture_computes_in_its_faster_policy(tmp_path,
                                                                                                    monkeypatch):
    """On a Zen 4 mixed bfloat16 trains a plain CNN 4x faster than float32 and MobileNetV2 1.5x slower."""
    monkeypatch.setenv("CXR_CACHE", str(tmp_path))
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    seconds = {("float32", "standard"): 0.129, ("mixed_bfloat16", "standard"): 0.031,
               ("float32", "depthwise"): 0.217, ("mixed_bfloat16", "depthwise"): 0.243}
    monkeypatch.setattr(precision, "_step_seconds", lambda policy, kind: seconds[policy, kind])
    chosen = {model: precision.resolve_precision("auto", model)
              for model in ("cnn", "vgg16", "densenet121_e2e", "mobilenetv2_e2e", "mobilenetv2", "xception", None)}
    assert chosen == {"cnn": "mixed_bfloat16", "vgg16": "mixed_bfloat16", "densenet121_e2e": "mixed_bfloat16",
                      "mobilenetv2_e2e": "float32", "mobilenetv2": "float32", "xception": "float32",
                      None: "mixed_bfloat16"}

