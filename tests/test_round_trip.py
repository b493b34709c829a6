"""Every model kind a user can make, trained for one short epoch, then used from new processes through every
surface: evaluate, predict (Keras and ONNX), stress, Ray and the service. Parametrized over the registry,
so a new kind that does not load, export or serve fails here."""

import pytest

from cxr.testing import FILES, make_run, round_trip_kinds, use_run

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kind", round_trip_kinds())
def test_a_trained_run_of_every_kind_works_from_a_new_process(kind, real_subset, tmp_path):
    assert all(f.exists() for f in FILES), "expected the full-resolution X-rays of the shared data"
    run = make_run(kind, real_subset, tmp_path)
    steps = use_run(run, tmp_path / "use")
    assert steps["evaluate"] == "n=40"
    assert set(steps) == {"evaluate", "predict", "onnx", "stress", "ray", "serve"}
