"""The layers run one way (DESIGN.md): results <- storage, and nothing inside the package
imports the root ``landscape``. Every module is parsed, so imports inside functions count too."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "landscape"

#: What storage/ may import from the package besides itself and results/: leaf modules that
#: import nothing of the package (checked below).
STORAGE_LOWER = ("landscape._version", "landscape.limits", "landscape._hashing")
#: Third-party libraries each layer may import (the standard library is always allowed).
THIRD_PARTY = {"results": {"numpy", "torch"}, "storage": {"numpy", "torch", "h5py"}}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every module that ``path`` imports, anywhere in it, with the line: ``from P import N``
    counts as ``P.N`` where ``N`` is a module, else as ``P``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub if _is_module(sub) else base, node.lineno))
    return found


def _all_imports() -> dict[str, list[tuple[str, int]]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _inside(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_the_walker_sees_function_level_and_relative_imports(tmp_path):
    # positive control: the parser resolves the forms the package uses
    imports = dict(_imports(PACKAGE / "storage" / "files.py"))
    assert "landscape._version" in imports and "landscape.storage.locks" in imports
    assert sum(len(v) for v in _all_imports().values()) > 500


def test_nothing_inside_the_package_imports_the_root():
    offenders = [
        f"{module}:{line}"
        for module, imports in _all_imports().items()
        for target, line in imports
        if target == "landscape" and module != "landscape"
    ]
    assert offenders == [], f"expected no import of the root package, got {offenders}"


def _layer_offenders(layer: str, allowed: tuple[str, ...]) -> list[str]:
    prefix = f"landscape.{layer}"
    return [
        f"{module}:{line} imports {target}"
        for module, imports in _all_imports().items()
        if _inside(module, prefix)
        for target, line in imports
        if not (
            _inside(target, prefix, *allowed)
            or target.partition(".")[0] in sys.stdlib_module_names | THIRD_PARTY[layer]
            or target == "__future__"
        )
    ]


def test_storage_imports_only_results_and_leaf_modules_and_results_only_numpy_and_torch():
    offenders = _layer_offenders("storage", ("landscape.results", *STORAGE_LOWER))
    offenders += _layer_offenders("results", ())
    assert offenders == [], f"expected results <- storage and nothing more, got {offenders}"


def test_the_lower_modules_storage_uses_import_nothing_of_the_package():
    imports = _all_imports()
    offenders = {
        m: [t for t, _ in imports[m] if t.partition(".")[0] == "landscape"] for m in STORAGE_LOWER
    }
    assert offenders == {m: [] for m in STORAGE_LOWER}


def test_results_and_storage_import_without_the_compute_modules():
    code = (
        "import sys, landscape.storage, landscape.results.hessian, landscape.results.paths, "
        "landscape.results.sharpness\n"
        "top = {'.'.join(m.split('.')[:2]) for m in sys.modules}\n"
        "heavy = sorted(top & {f'landscape.{m}' for m in ('hessian', 'sharpness', 'paths', "
        "'objective', 'directions', 'params', 'evaluate', 'surface')})\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=PACKAGE.parent,
    )
    assert out.stdout.strip() == "[]"


def test_the_package_and_storage_import_where_fcntl_is_missing(tmp_path):
    # as on Windows: the locks become no-ops, a file is still written and read
    code = (
        "import sys; sys.modules['fcntl'] = None\n"
        "import numpy as np, landscape, landscape.storage, landscape.storage.locks as locks\n"
        "from landscape.storage.groups import read_group, write_groups\n"
        "assert locks.fcntl is None\n"
        f"path = {str(tmp_path / 'r.h5')!r}\n"
        "with locks.holding(path):\n"
        "    write_groups(path, {'g': ({'a': np.arange(3.0)}, {'k': 1})})\n"
        "write_groups(path, {'h': ({}, {'k': 2})})\n"
        "arrays, attrs = read_group(path, 'g')\n"
        "print(landscape.__version__, arrays['a'].tolist(), attrs['k'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent
    )
    assert out.returncode == 0, out.stderr
    from landscape import __version__

    assert out.stdout.split() == [__version__, "[0.0,", "1.0,", "2.0]", "1"]


def test_py_typed_is_shipped():
    assert (PACKAGE / "py.typed").is_file()
    text = (PACKAGE.parent / "pyproject.toml").read_text()
    assert 'landscape = ["py.typed"]' in text


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports at run time (anywhere, ``TYPE_CHECKING``
    blocks aside)."""
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        hidden = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and _is_type_checking(node)
            for stmt in node.body
            for inner in ast.walk(stmt)
        }
        lines = {n.lineno for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)} - {
            n.lineno for n in ast.walk(tree) if id(n) in hidden and hasattr(n, "lineno")
        }
        graph[_module_name(path)] = {
            target
            for target, line in _imports(path)
            if line in lines and target.partition(".")[0] == "landscape"
        }
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_the_cycle_finder_finds_a_cycle_and_skips_type_checking_imports(tmp_path):
    # positive control on a made-up graph, and on the package's own TYPE_CHECKING blocks
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e", "d"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    runtime = _import_graph()
    typed = [
        m
        for m, imports in _all_imports().items()
        if {t for t, _ in imports if t.startswith("landscape")} - runtime[m]
    ]
    assert typed, "expected some module with TYPE_CHECKING-only imports"


def test_no_import_cycle_among_library_modules():
    # function-level imports count: a cycle kept apart only by them is still a cycle
    cycles = _cycles(_import_graph())
    assert cycles == [], f"expected no import cycle, got {cycles}"
