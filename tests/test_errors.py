"""Library code raises exceptions a caller can catch; only the command line turns them into exit codes."""

from pathlib import Path

from conftest import writable_copy
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


def _without(module: str, *args: str):
    """`cxr ARGS` in a new process where `module` cannot be imported, as on an install without its extra."""
    import subprocess
    import sys

    script = (f"import sys; sys.modules[{module!r}] = None; from cxr.cli import main; "
              f"sys.exit(main(['-q', *sys.argv[1:]]))")
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=600)


def test_a_missing_optional_dependency_is_one_line_naming_what_to_install(trained_run, tmp_path):

    from conftest import FULLRES

    run = writable_copy(trained_run, tmp_path / "run")  # the export would write into it
    xray = str(FULLRES / "NORMAL" / "IM-0217-0001.jpeg")
    dicom = tmp_path / "scan.dcm"
    dicom.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    cases = {  # extra: (missing module, command)
        "cluster": ("ray", ["predict", str(trained_run), xray, "--ray"]),
        "onnx": ("tf2onnx", ["export", str(run)]),
        "serve": ("uvicorn", ["serve", str(trained_run)]),
        "dicom": ("pydicom", ["predict", str(trained_run), str(dicom)]),
    }
    for extra, (module, args) in cases.items():
        result = _without(module, *args)
        assert result.returncode != 0, extra
        lines = result.stderr.strip().splitlines()
        assert any(f"[{extra}]" in line for line in lines) and "Traceback" not in result.stderr, (extra, lines)


def test_commands_joined_by_then_run_in_order_and_stop_at_the_first_failure(tmp_path):
    from cxr.cli import _steps

    assert _steps(["-q", "audit", "--out", "a", "--then", "compare", "r", "--out", "b"]) == [
        ["-q", "audit", "--out", "a"], ["-q", "compare", "r", "--out", "b"]]
    (tmp_path / "served.txt").write_text(f"{tmp_path / 'no-such-run'}\n")
    result = run_cxr("evaluate", f"@{tmp_path / 'served.txt'}", "--then", "evaluate", tmp_path / "never-read")
    assert result.returncode == 1
    # Each step is echoed as it starts; the run named in the file is the one read, and the second step never runs.
    assert result.stdout.splitlines() == [f"cxr -q evaluate @{tmp_path / 'served.txt'}"]
    assert result.stderr.strip().splitlines() == [f"{tmp_path / 'no-such-run' / 'model.json'}: not found "
                                                  "(is this a cxr run folder?)"]
