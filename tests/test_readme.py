"""Every Python block of the README runs on its own, as in a fresh interpreter (forked from
one with the imports done: see ``_zygote``)."""

import os
import re

import pytest
from _shared import NO_DEMO_EXTRA, has_demo_extra, loads_digits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def readme_blocks() -> list[str]:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return BLOCK.findall(f.read())


def test_the_readme_has_python_blocks():
    assert len(readme_blocks()) >= 4


@pytest.mark.parametrize("index", range(len(readme_blocks())))
def test_readme_block_runs_alone(index, tmp_path, zygote):
    code = readme_blocks()[index]
    if loads_digits(code) and not has_demo_extra():
        pytest.skip(NO_DEMO_EXTRA)
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=ROOT)
    result = zygote.run(code=code, cwd=str(tmp_path), env=env, timeout=300)
    assert result.returncode == 0, f"README block {index} failed:\n{code}\n{result.stderr[-2000:]}"


def test_readme_blocks_print_what_they_show():
    """A block pasted into a script shows its results: a value is printed, never left as a
    bare expression (which only an interactive prompt echoes)."""
    import ast

    for code in readme_blocks():
        for node in ast.walk(ast.parse(code)):
            body = getattr(node, "body", [])
            for statement in body if isinstance(body, list) else []:
                if isinstance(statement, ast.Expr) and not isinstance(statement.value, ast.Call):
                    raise AssertionError(f"bare expression: {ast.unparse(statement)}")
