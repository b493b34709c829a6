"""What the reliability checks share beyond cxr.testing: environments, wire names, the traceback marker."""

import os
from pathlib import Path

from cxr.testing import CHEST_XRAY, FULLRES, ROOT, Server, real_subset_of, run_cxr  # noqa: F401

TRACEBACK = "Traceback (most recent call last)"
cxr = run_cxr
real_subset = real_subset_of


def wire_name(path: Path) -> str:
    """A file name as an upload carries it: a name that is not UTF-8 goes as its bytes read as Latin-1."""
    return os.fsencode(path.name).decode("latin-1")


def env_with(**extra) -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **{k: str(v) for k, v in extra.items()}}
