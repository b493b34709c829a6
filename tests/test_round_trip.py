"""Every model kind a user can make, trained for one short epoch, then used through every surface: evaluate,
predict (Keras and ONNX), export and stress in a new process, as a user's script runs them after the training, and
the service in another, which loads the run from disk. Parametrized over the registry,
so a new kind that does not load, export or serve fails here. The kinds the miniature demo trains (one epoch,
48 px, as tiny_training does) are taken from it, copied: the round trip writes into the run. The demo has
stress-tested those already. Ray's workers load a run as any process does: tests/test_ray.py tests them, and
`make reliability` runs every kind on Ray as well."""


import pytest

from conftest import writable_copy
from cxr.testing import ENSEMBLE, FILES, round_trip_kinds, tiny_training, use_run

# kind: the demo's run of it, then the runs it reads (an ensemble's members, beside it as in the demo)
DEMO_RUNS = {"cnn": ["cnn"], "cnn_aug": ["cnn_aug"], "vgg16": ["vgg16"], "densenet121_e2e": ["densenet121_e2e"],
             "mobilenetv2_e2e": ["mobilenetv2_e2e"], ENSEMBLE: ["robust", "densenet121_e2e", "mobilenetv2_e2e"]}

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kind", round_trip_kinds())
def test_a_trained_run_of_every_kind_works_from_a_new_process(kind, request, tmp_path):
    assert all(f.exists() for f in FILES), "expected the full-resolution X-rays of the shared data"
    if kind in DEMO_RUNS:
        demo = request.getfixturevalue("demo_runs") / "runs"
        for name in DEMO_RUNS[kind]:
            writable_copy(demo / name, tmp_path / "runs" / name)
        run = tmp_path / "runs" / DEMO_RUNS[kind][0]
        training = None
    else:  # trained in the process that then uses it, as a user's script would
        run = tmp_path / kind
        training = tiny_training(kind, request.getfixturevalue("real_subset"), run)
    stress = kind not in DEMO_RUNS
    steps = use_run(run, tmp_path / "use", stress=stress, ray=False, train=training)
    assert steps["evaluate"] == "n=40"
    assert set(steps) == {"evaluate", "predict", "onnx", "serve"} | ({"stress"} if stress else set())
