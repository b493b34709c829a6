"""Library code raises exceptions a caller can catch; only the command line turns them into exit codes."""

from pathlib import Path

from cxr.errors import CxrError, DataError, RunError, UsageError
from cxr.testing import run_cxr

SRC = Path(__file__).resolve().parents[1] / "src" / "cxr"


def test_a_library_caller_catches_a_bad_call_as_an_ordinary_exception(tmp_path):
    from cxr.inference.predictor import Predictor
    from cxr.models import build

    caught = []
    for call in (lambda: Predictor(tmp_path / "no-such-run"), lambda: build("resnet9000"),
                 lambda: __import__("cxr.data.layout", fromlist=["discover"]).discover(tmp_path)):
        try:
            call()
        except Exception as exc:  # what a notebook, a Ray actor or the service would write
            caught.append(exc)
    assert [type(e) for e in caught] == [RunError, UsageError, DataError]
    assert all(isinstance(e, CxrError) for e in caught)
    assert "no-such-run" in str(caught[0]) and "cnn_aug" in str(caught[1])


def test_the_command_line_prints_one_line_and_exits_1(tmp_path):
    result = run_cxr("evaluate", tmp_path / "no-such-run")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"{tmp_path / 'no-such-run' / 'model.json'}: not found "
                                                  "(is this a cxr run folder?)"]
