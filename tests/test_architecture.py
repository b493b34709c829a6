"""House rules that keep the code easy to change, over the package and the tools beside it (bench/,
reliability/): stages that only import lower stages, no import cycles (function-level imports count), small
files, one way to rename a file into place, and only command lines exit. ARCHITECTURE.md states them."""

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "cxr"
TREES = (PACKAGE, ROOT / "bench", ROOT / "reliability")
MAX_LINES = 300
# The stages, lowest first: a module may import its own stage and lower ones, never a higher one.
STAGES = (
    ("cxr", "cxr.errors", "cxr.files", "cxr.figures"),
    ("cxr.data",),
    ("cxr.models",),
    ("cxr.runs",),
    ("cxr.inference",),
    ("cxr.evaluation",),
    ("cxr.training",),
    ("cxr.reports",),
    ("cxr.serve",),
    ("cxr.cli",),
    ("cxr.testing",),
)


def python_files():
    return sorted(p for tree in TREES for p in tree.rglob("*.py"))


def module_name(path: Path) -> str:
    """cxr.x.y for the package, bench.x / reliability.x for the tools."""
    base = SRC if path.is_relative_to(PACKAGE) else ROOT
    parts = path.relative_to(base).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Known modules a file imports anywhere in it; `from a.b import c` counts a.b.c when that is a module.
    The tools import each other by bare name (their folder is on the path): `common` is reliability.common."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    if not path.is_relative_to(PACKAGE):
        found |= {f"{path.parent.name}.{name}" for name in found}
    return {name for name in found if name in known}


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in python_files()}
    known = set(files)
    return {name: imported_modules(path, known) - {name} for name, path in files.items()}


def stage(module: str) -> int:
    """Index in STAGES of the longest prefix that names the module's stage."""
    matches = [(len(prefix), i) for i, prefixes in enumerate(STAGES) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    return max(matches)[1]


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph()
    # the walk sees what it should: package, tools, and the tools' imports of each other
    assert "cxr.models.cnn" in graph["cxr.models"] and "cxr.inference.predictor" in graph["cxr.serve.app"]
    assert "reliability.common" in graph["reliability.run"]
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None


def test_every_package_module_belongs_to_a_stage_and_imports_no_higher_one():
    graph = import_graph()
    upward = [f"{module} (stage {stage(module)}) imports {target} (stage {stage(target)})"
              for module, targets in graph.items() if module.startswith("cxr")
              for target in targets if stage(target) > stage(module)]
    assert not upward, "a stage imports a higher one:\n" + "\n".join(upward)


def test_metrics_know_nothing_of_training_or_models():
    assert import_graph()["cxr.evaluation.metrics"] <= {"cxr"}


def test_no_file_is_over_the_line_limit():
    lines = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in python_files()}
    long = {name: n for name, n in lines.items() if n > MAX_LINES}
    assert not long, f"split these files (over {MAX_LINES} lines): {long}"


def _calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            yield node, getattr(node.func, "attr", getattr(node.func, "id", None))


MAX_FUNCTION_LINES = 60


def test_no_function_in_the_package_is_over_the_function_limit():
    """A function that does not fit on a screen does several jobs: split it where the jobs part."""
    long = [f"{p.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for p in PACKAGE.rglob("*.py") for node in ast.walk(ast.parse(p.read_text()))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"split these functions (over {MAX_FUNCTION_LINES} lines): {long}"


def test_files_are_renamed_into_place_only_by_the_one_helper():
    """cxr.files.written_aside: a killed process never leaves half a file under the real name."""
    renames = [f"{p.relative_to(ROOT)}:{node.lineno}" for p in python_files() if p != PACKAGE / "files.py"
               for node, name in _calls(p) if name == "replace" and not node.keywords
               and len(node.args) in (1, 2) and not isinstance(node.func, ast.Name)
               and not (isinstance(node.func.value, ast.Constant) or len(node.args) == 2
                        and isinstance(node.args[0], ast.Constant))]
    assert not renames, f"write through cxr.files.written_aside instead: {renames}"


def _raises_system_exit(tree) -> list[int]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if getattr(target, "id", None) == "SystemExit":
                found.append(node.lineno)
        if isinstance(node, ast.ClassDef) and "SystemExit" in {getattr(b, "id", None) for b in node.bases}:
            found.append(node.lineno)
    return found


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_command_lines_exit(path):
    """Library code raises a cxr.errors.CxrError that a caller (a Ray actor, the service, a notebook) can
    catch; only cxr.cli turns it into an exit status, and a tool script only in its main()."""
    if path.is_relative_to(PACKAGE / "cli"):
        return
    tree = ast.parse(path.read_text())
    allowed = set()
    if not path.is_relative_to(PACKAGE):
        mains = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "main"]
        allowed = {line for m in mains for line in _raises_system_exit(m)}
    assert set(_raises_system_exit(tree)) <= allowed, f"{path.name} raises SystemExit outside a command line"


def test_every_model_load_goes_through_the_one_loader():
    """cxr.runs.folder.load_keras_model passes cxr's custom layers in; a load that bypasses it fails in a fresh
    process for any model that uses one (a cnn_aug run once could not be served for exactly that reason)."""
    bypass = [str(p.relative_to(ROOT)) for p in python_files()
              if "saving.load_model(" in p.read_text() and p.name not in ("folder.py", "pretrained.py")]
    assert not bypass, f"load models with cxr.runs.folder.load_keras_model, not keras.saving.load_model: {bypass}"


def test_every_package_folder_is_a_regular_package_that_git_keeps():
    """A folder without __init__.py would import as a namespace package here and be left out of a wheel; a
    source file that .gitignore matches would be missing from every clone (a root-level `runs/` pattern once
    hid src/cxr/runs/)."""
    import shutil
    import subprocess

    folders = {p.parent for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    assert not [str(f) for f in folders if not (f / "__init__.py").exists()]
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    sources = [str(p.relative_to(ROOT)) for p in python_files()]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *sources], cwd=ROOT, capture_output=True,
                             text=True).stdout.split()
    assert not ignored, f"git ignores these source files: {ignored}"


RESULT_FILES = {"model.json", "model.onnx.json", "training.json", "metrics.json", "stress.json", "stress_val.json",
                "evidence.json", "site_check.json"}


def test_a_runs_result_files_are_named_only_where_they_are_read_and_written():
    """cxr.runs holds one typed reader and writer per file a run holds (RunInfo, TrainingRecord, Metrics, Stress,
    Evidence, SiteCheck): a file name spelled anywhere else is a file read around them, as a dict."""
    named = [f"{p.relative_to(ROOT)}:{node.lineno} {node.value}" for p in python_files()
             if not p.is_relative_to(PACKAGE / "runs") for node in ast.walk(ast.parse(p.read_text()))
             if isinstance(node, ast.Constant) and node.value in RESULT_FILES]
    assert not named, f"read and write these through the classes in cxr.runs: {named}"
