"""House rules that keep the package easy to change: no import cycles (function-level imports count), small files."""

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "cxr"
MAX_LINES = 300


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """cxr modules a file imports anywhere in it; `from cxr.x import y` counts cxr.x.y when that is a module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in known}


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    return {name: imported_modules(path, known) - {name} for name, path in files.items()}


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph()
    assert "cxr.engines" in graph and "cxr.models.cnn" in graph["cxr.models"]  # the walk sees what it should
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None


def test_metrics_know_nothing_of_training_or_models():
    graph = import_graph()
    assert graph["cxr.metrics"] <= {"cxr"}


def test_no_source_file_is_over_the_line_limit():
    lines = {str(p.relative_to(SRC)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    long = {name: n for name, n in lines.items() if n > MAX_LINES}
    assert not long, f"split these files (over {MAX_LINES} lines): {long}"


def test_every_model_load_goes_through_the_one_loader():
    """cxr.run.load_keras_model passes cxr's custom layers in; a load that bypasses it fails in a fresh process
    for any model that uses one (a cnn_aug run once could not be served for exactly that reason)."""
    bypass = [str(p.relative_to(SRC)) for p in PACKAGE.rglob("*.py")
              if "saving.load_model(" in p.read_text() and p.name not in ("run.py", "pretrained.py")]
    assert not bypass, f"load models with cxr.run.load_keras_model, not keras.saving.load_model: {bypass}"
