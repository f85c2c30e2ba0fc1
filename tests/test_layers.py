"""The house's one direction of imports (docs/architecture.md): kit <- agent <- collector.

The shared kit imports neither the agent nor the collector, and the agent never imports the
collector, at module level or inside a function. Read from the source with ast, so an import
that only runs in one command is caught as well as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("kit", "agent", "collector")
# What each package may import of the project: itself and the floors below it.
MAY_IMPORT = {"kit": {"kit"}, "agent": {"kit", "agent"}, "collector": {"kit", "agent", "collector"}}


def project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every import of a project package in the file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        out += [(node.lineno, n.split(".")[0]) for n in names if n.split(".")[0] in PACKAGES]
    return out


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_run_one_way(package):
    files = modules(package)
    assert files, f"no modules found under {package}/"
    wrong = [f"{p.relative_to(ROOT)}:{line} imports {target}"
             for p in files for line, target in project_imports(p)
             if target not in MAY_IMPORT[package]]
    assert wrong == [], "imports against the direction kit <- agent <- collector:\n" + "\n".join(wrong)


def test_the_check_sees_imports_inside_functions(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def report():\n    from collector import stats\n    import agent.store\n")
    assert project_imports(bad) == [(2, "collector"), (3, "agent")]


def test_test_modules_import_helpers_not_each_other():
    """Shared test code lives in conftest.py (fixtures) or a helper module (tests/fakenet.py,
    tests/catalog.py, ...): a test module importing another runs its tests' imports and couples
    two files that change for different reasons."""
    wrong = []
    for p in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = ([f"tests.{a.name}" for a in node.names] if node.module == "tests"
                         else [node.module])
            else:
                continue
            wrong += [f"{p.name}:{node.lineno} imports {n}" for n in names
                      if n.removeprefix("tests.").startswith("test_")]
    assert wrong == [], "test modules importing test modules:\n" + "\n".join(wrong)


def imports_inside_functions(path: Path) -> list[tuple[int, str]]:
    """(line, text) of each import statement inside a function body."""
    src = path.read_text()
    out = []
    for fn in ast.walk(ast.parse(src, str(path))):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out += [(node.lineno, ast.get_source_segment(src, node) or "")
                    for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom))]
    return sorted(set(out))


def says_why(lines: list[str], lineno: int) -> bool:
    """An import inside a function is deferred for cost, and says so: "deferred" on its line
    or in the comment block just above it (up to six lines, imports of the same block between)."""
    return any("deferred" in line.lower() for line in lines[max(0, lineno - 7):lineno])


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_inside_functions_say_why(package):
    """STYLE rule 15: an import inside a function is for cost (a heavy module loaded when a command
    needs it), never to hide a cycle; it says which in a comment with the word "deferred"."""
    silent = []
    for p in modules(package):
        lines = p.read_text().split("\n")
        silent += [f"{p.relative_to(ROOT)}:{n}: {text}" for n, text in imports_inside_functions(p)
                   if not says_why(lines, n)]
    assert silent == [], ("imports inside functions that do not say why they are deferred:\n"
                          + "\n".join(silent))


def test_the_inner_import_check_needs_the_reason(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def a():\n    import json\n\n\ndef b():\n    # deferred: costs 4 MB\n    import ssl\n")
    lines = f.read_text().split("\n")
    assert [(n, says_why(lines, n)) for n, _ in imports_inside_functions(f)] == [(2, False), (7, True)]
