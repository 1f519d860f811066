"""The documentation builds offline with every warning an error (``make docs``)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_parser")

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_without_warnings(tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "build.py"), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, f"the docs build failed:\n{result.stderr[-5000:]}"
    html = tmp_path / "html"
    gallery = (html / "gallery.html").read_text(encoding="utf-8")
    for example in (ROOT / "examples").glob("*.py"):
        assert f"examples/{example.name}" in gallery, f"{example.name} is not in the gallery"
    cli = (html / "cli.html").read_text(encoding="utf-8")
    for command in ("surface", "hessian", "sharpness", "compare", "plot", "info", "demo"):
        assert f"landscape {command}" in cli
    assert (html / "api.html").is_file() and (html / "settings.html").is_file()
