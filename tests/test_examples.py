"""Every example runs in quick mode and writes the figures its docstring names.

The examples are found when the tests are collected, so a new one is tested without being
listed here. Each runs as in a fresh interpreter (forked from one with the imports done: see
``_zygote``) with ``LANDSCAPE_QUICK=1`` and writes into a
temporary ``LANDSCAPE_FIGURES`` folder, never into the repository's ``figures/``.
"""

import ast
import importlib.metadata
import importlib.util
import os
import re
from pathlib import Path

import pytest
from _shared import NO_DEMO_EXTRA, has_demo_extra, loads_digits

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
FIGURE = re.compile(r"figures/([\w.-]+\.(?:png|gif|pdf|svg|html|vts|vtu))")
EXTRA = re.compile(r"landscape\[(\w+)\]")


def _docstring(example: Path) -> str:
    return ast.get_docstring(ast.parse(example.read_text(encoding="utf-8"))) or ""


def _needed_modules(example: Path) -> set[str]:
    """The top-level modules the example imports, and the packages of the extras it names."""
    tree = ast.parse(example.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    extras = EXTRA.findall(ast.get_docstring(tree) or "")
    for requirement in importlib.metadata.requires("landscape") or []:
        if any(f'extra == "{extra}"' in requirement for extra in extras):
            names.add(re.match(r"[\w-]+", requirement)[0].replace("-", "_"))
    return names


@pytest.mark.slow  # each example in a fresh interpreter: 16-42s on 2 busy cores
@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_example_runs_quickly_and_writes_its_figures(example, tmp_path, zygote):
    source = example.read_text(encoding="utf-8")
    assert "LANDSCAPE_FIGURES" in source, (
        f"{example.name} must write into os.environ.get('LANDSCAPE_FIGURES', <figures/>)"
    )
    assert "LANDSCAPE_QUICK" in source, f"{example.name} needs a LANDSCAPE_QUICK=1 mode"
    figures = sorted(set(FIGURE.findall(_docstring(example))))
    assert figures, f"{example.name}'s docstring must say which figures/NAME.EXT it writes"
    missing = sorted(m for m in _needed_modules(example) if importlib.util.find_spec(m) is None)
    if missing:
        pytest.skip(f"{example.name} needs {', '.join(missing)}")
    if loads_digits(source) and not has_demo_extra():
        pytest.skip(NO_DEMO_EXTRA)
    out = tmp_path / "figures"
    env = dict(os.environ, LANDSCAPE_QUICK="1", LANDSCAPE_FIGURES=str(out), MPLBACKEND="Agg",
               OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))  # fmt: skip
    result = zygote.run(path=str(example), cwd=str(tmp_path), env=env, timeout=300)
    assert result.returncode == 0, f"{example.name} failed:\n{result.stderr[-3000:]}"
    for name in figures:
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, f"{example.name} did not write {name}"
