"""Which floating-point policy to compute in: mixed bfloat16 where the CPU has it natively, else float32."""

from pathlib import Path

from cxr.errors import UsageError

POLICIES = ("float32", "mixed_bfloat16")


FLAGS_THAT_MATTER = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")  # fastest first: what bfloat16 and VGG16 run on


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_bf16() -> bool:
    flags = _cpuinfo()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_facts() -> dict:
    """The CPU as benchmarks must record it: two machines with one name can differ 2x (AMX or not)."""
    import os

    info = _cpuinfo()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    return {"model": model, "cores": os.cpu_count(), "flags": {f: f in flags for f in FLAGS_THAT_MATTER},
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA")}


def resolve_precision(precision: str) -> str:
    """auto: mixed bfloat16 where the CPU computes bfloat16 natively (2.7x faster, same accuracy), else float32."""
    if precision == "auto":
        return "mixed_bfloat16" if cpu_has_bf16() else "float32"
    if precision not in POLICIES:
        raise UsageError(f"--precision must be auto, float32 or mixed_bfloat16, not {precision!r}")
    return precision
