"""The plotting package as a whole: ``import landscape`` leaves matplotlib alone, names resolve."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import landscape

ROOT = Path(landscape.__file__).resolve().parents[1]
PLOTTING_NAMES = [
    "landscape_style",
    "plot_block_curvature",
    "plot_block_densities",
    "plot_block_js_distance",
    "plot_contour",
    "plot_contourf",
    "plot_contours_compare",
    "plot_convexity",
    "plot_correlation",
    "plot_eigenvalues",
    "plot_heatmap",
    "plot_line",
    "plot_lines_compare",
    "plot_measures",
    "plot_spectral_density",
    "plot_surface3d",
    "plot_tracking",
    "plot_tracking_run",
    "save_figure",
]


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter that imports this checkout; return its stdout."""
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_is_lazy_and_every_public_name_resolves():
    code = (
        "import sys, landscape, landscape.compare, landscape.cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))\n"
        "import landscape.plotting as p\n"
        "from landscape import *\n"
        "from landscape import plot_contour, plotting\n"
        "missing = [n for n in landscape.__all__ if not hasattr(landscape, n)]\n"
        "assert not missing, missing\n"
        "assert set(p.__all__) <= set(landscape.__all__) & set(dir(landscape))\n"
        "assert all(getattr(landscape, n) is getattr(p, n) for n in p.__all__)\n"
        "assert plot_contour is p.plot_contour and plotting is p and landscape.plotting is p\n"
        "print(sorted(p.__all__))"
    )
    # matplotlib is imported by the first use of a plotting name, not by ``import landscape``
    assert run_python(code).splitlines() == ["[]", str(sorted(PLOTTING_NAMES))]


def test_old_module_paths_and_constants_still_import():
    from landscape.plotting import CENTER_STYLE, DEFAULT_NUM_LEVELS, LOG_SPAN, plot_measures

    assert (DEFAULT_NUM_LEVELS, LOG_SPAN, CENTER_STYLE["marker"]) == (20, 100.0, "*")
    assert plot_measures.__module__ == "landscape.plotting.comparisons"


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        landscape.no_such_name  # noqa: B018
