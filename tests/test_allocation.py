"""Large arrays: numpy's transparent huge pages are off in a process that imports cxr first (see
cxr/__init__.py: on VMs that compact memory on first touch they made a fresh 85 MB array 15x slower), and a
user's own NUMPY_MADVISE_HUGEPAGE wins."""

import os
import subprocess
import sys

import pytest

ASK = "import cxr, numpy; print(numpy._core.multiarray._get_madvise_hugepage())"


@pytest.mark.parametrize("setting, expected", [(None, "False"), ("1", "True")])
def test_huge_pages_off_unless_the_user_asks(setting, expected):
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if setting is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = setting
    out = subprocess.run([sys.executable, "-c", ASK], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
