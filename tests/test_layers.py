"""The structure the project keeps: layers (import-linter's contracts in pyproject.toml), what `features` may
use of `stores`, imports inside functions only for heavy or optional dependencies (with their reason), and
modules and functions of a readable size."""

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import stores

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("stores", "features", "pipelines", "training")
LIBRARY = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py")) + [
    ROOT / "flows.py",
    ROOT / "training_flows.py",
    ROOT / "cli.py",
]
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 500, 60
LONG_FUNCTIONS_ALLOWED = {("cli.py", "build_parser")}  # an argument parser reads best as one list


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_import_contracts_are_kept():
    done = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_every_stores_module_is_shared_or_forbidden_to_features():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    forbidden = next(c for c in config if c.get("source_modules") == ["features"])["forbidden_modules"]
    modules = {f"stores.{p.stem}" for p in (ROOT / "stores").glob("*.py") if p.stem != "__init__"}
    assert set(stores.SHARED) | set(forbidden) == modules and not set(stores.SHARED) & set(forbidden)


def _function_imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import | ast.ImportFrom):
                    yield sub


def _imported(node: ast.Import | ast.ImportFrom) -> str:
    return (node.module or "") if isinstance(node, ast.ImportFrom) else node.names[0].name


@pytest.mark.parametrize("path", LIBRARY, ids=_relative)
def test_imports_inside_functions_are_for_heavy_or_optional_dependencies(path):
    """Each says why (a comment on its line or the line above); our own modules are imported inside a
    function only by the command line, which loads a verb's layers when the verb runs."""
    lines = path.read_text().splitlines()
    for node in _function_imports(ast.parse(path.read_text())):
        where = f"{_relative(path)}:{node.lineno} imports {_imported(node)}"
        ours = _imported(node).split(".")[0] in (*PACKAGES, "flows", "training_flows", "cli")
        assert not ours or path.name == "cli.py", f"{where} inside a function (a hidden cycle?)"
        said = "#" in lines[node.lineno - 1] or lines[node.lineno - 2].strip().startswith("#")
        assert said, f"{where} inside a function without saying why"


@pytest.mark.parametrize("path", LIBRARY, ids=_relative)
def test_modules_and_functions_stay_readable(path):
    text = path.read_text()
    assert len(text.splitlines()) < MAX_MODULE_LINES, f"{_relative(path)} has {len(text.splitlines())} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            if (path.name, node.name) not in LONG_FUNCTIONS_ALLOWED:
                assert length <= MAX_FUNCTION_LINES, (
                    f"{_relative(path)}:{node.lineno} {node.name} has {length} lines"
                )
