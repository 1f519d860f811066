"""The documentation builds offline with every warning an error (``make docs``)."""

import os
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_parser")

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_without_warnings(tmp_path, zygote):
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    build = str(ROOT / "docs" / "build.py")
    result = zygote.run(path=build, args=(str(tmp_path),), cwd=str(tmp_path), env=env, timeout=600)
    assert result.returncode == 0, f"the docs build failed:\n{result.stderr[-5000:]}"
    html = tmp_path / "html"
    gallery = (html / "gallery.html").read_text(encoding="utf-8")
    for example in (ROOT / "examples").glob("*.py"):
        assert f"examples/{example.name}" in gallery, f"{example.name} is not in the gallery"
    cli = (html / "cli.html").read_text(encoding="utf-8")
    for command in ("surface", "hessian", "sharpness", "compare", "plot", "info", "demo"):
        assert f"landscape {command}" in cli
    assert (html / "api.html").is_file() and (html / "settings.html").is_file()
