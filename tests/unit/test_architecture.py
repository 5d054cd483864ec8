"""The house rules of docs/architecture.md, checked on the code itself.

- import-linter's contracts (.importlinter): layers, forbidden imports, no cycles between siblings;
- no import cycle anywhere in the package, function-level imports included (grimp's graph;
  an import under ``TYPE_CHECKING`` only is not a dependency at run time and is left out);
- modules under 400 lines, functions under 80.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "crypto_predictor"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def test_every_import_linter_contract_is_kept():
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout and "5 kept" in result.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("serving/service.py", "from crypto_predictor.training import pipeline", "Imports point down the layers"),
    ("api/health.py", "import xgboost", "import neither TensorFlow nor xgboost"),
    ("market/store.py", "from crypto_predictor.registry import bundle", "Imports point down the layers"),
    ("serving/data.py", "from crypto_predictor.serving import service", "No import cycles"),
])
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, line, contract):
    """The contracts are live: a copy of the package with one bad import fails lint-imports."""
    shutil.copytree(PACKAGE, tmp_path / "crypto_predictor", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / ".importlinter", tmp_path / ".importlinter")
    target = tmp_path / "crypto_predictor" / module
    target.write_text(target.read_text() + f"\n\ndef _late():\n    {line}  # a function-level import counts too\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_no_import_cycle_between_any_two_modules():
    graph = grimp.build_graph("crypto_predictor", cache_dir=None, exclude_type_checking_imports=True)
    assert len(graph.modules) == len(_sources())  # the whole package was read
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = grimp.ImportGraph()
    for name in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(name)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.a")
    graph.add_import(importer="p.c", imported="p.a")
    assert _cycles(graph) == [["p.a", "p.b"]]


def _sources():
    return sorted(PACKAGE.rglob("*.py"))


def test_modules_stay_small():
    long = {str(p.relative_to(REPO)): n for p in _sources() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_functions_stay_short():
    long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []
