"""Every model kind a user can make, trained for one short epoch, then used from new processes through every
surface: evaluate, predict (Keras and ONNX), stress, Ray and the service. Parametrized over the registry,
so a new kind that does not load, export or serve fails here."""

import pytest

from conftest import FULLRES
from cxr.testing import make_run, round_trip_kinds, use_run

pytestmark = pytest.mark.integration
FILES = [FULLRES / "NORMAL" / "NORMAL2-IM-1136-0001.jpeg", FULLRES / "NORMAL" / "IM-0217-0001.jpeg",
         FULLRES / "PNEUMONIA" / "person1110_bacteria_3051.jpeg"]


@pytest.mark.parametrize("kind", round_trip_kinds())
def test_a_trained_run_of_every_kind_works_from_a_new_process(kind, real_subset, tmp_path):
    files = [f for f in FILES if f.exists()]
    assert len(files) == len(FILES), f"expected full-resolution X-rays under {FULLRES}"
    run = make_run(kind, real_subset, tmp_path)
    steps = use_run(run, files, FULLRES, tmp_path / "use")
    assert steps["evaluate"] == "n=40"
    assert set(steps) == {"evaluate", "predict", "onnx", "stress", "ray", "serve"}
