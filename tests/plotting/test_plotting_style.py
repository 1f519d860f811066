"""Tests of landscape.plotting.style and of the plotting package as a whole.

Styling restores matplotlib's settings; every plot renders and leaves rcParams unchanged;
``import landscape`` does not import matplotlib, and every public name still resolves.
"""

from __future__ import annotations

import os

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pytest
from _plotting_helpers import (
    X,
    Y,
    asym,
    bowl,
    nasty,
    rc_snapshot,
    surface2d,
)

from landscape.plotting import (
    landscape_style,
    plot_contour,
    plot_contourf,
    plot_contours_compare,
    plot_convexity,
    plot_eigenvalues,
    plot_heatmap,
    plot_line,
    plot_lines_compare,
    plot_measures,
    plot_spectral_density,
    plot_surface3d,
    save_figure,
)
from landscape.surface import Surface

pytestmark = pytest.mark.usefixtures("figures_closed_rc_unchanged")


def test_landscape_style_sets_and_restores():
    before = rc_snapshot()
    with landscape_style("paper") as params:
        assert mpl.rcParams["pdf.fonttype"] == 42
        assert mpl.rcParams["ps.fonttype"] == 42
        assert mpl.rcParams["svg.fonttype"] == "none"
        assert mpl.rcParams["font.size"] == 8.0
        assert params["font.size"] == 8.0
        fig = plt.figure()
        plot_contour(surface2d(bowl()), ax=fig.add_subplot())
    assert rc_snapshot() == before
    with landscape_style("talk", font_scale=2.0, rc={"lines.linewidth": 3.0}):
        assert mpl.rcParams["font.size"] == 26.0
        assert mpl.rcParams["lines.linewidth"] == 3.0
    assert rc_snapshot() == before


def test_landscape_style_restores_after_an_error():
    before = rc_snapshot()
    with pytest.raises(RuntimeError), landscape_style("poster"):
        raise RuntimeError("boom")
    assert rc_snapshot() == before
    with pytest.raises(ValueError, match="context"):
        with landscape_style("slides"):  # type: ignore[arg-type]
            pass


ALL_PLOTS = {
    "line": lambda: plot_line(Surface(x=X, y=None, metrics={"loss": X**2, "accuracy": X})),
    "contour": lambda: plot_contour(surface2d(nasty())),
    "contourf": lambda: plot_contourf(surface2d(nasty()), log=True),
    "heatmap": lambda: plot_heatmap(surface2d(nasty())),
    "surface3d": lambda: plot_surface3d(surface2d(nasty())),
    "convexity": lambda: plot_convexity(
        Surface(x=X, y=Y, metrics={"convexity": np.abs(asym(X, Y)) / 20})
    ),
    "spectral_density": lambda: plot_spectral_density(np.arange(5.0), np.array([0, 1, 2, 1, 0])),
    "eigenvalues": lambda: plot_eigenvalues([3.0, 2.0], errors=[0.1, 0.2]),
    "lines_compare": lambda: plot_lines_compare({"a": (X, X**2, X * 0 + 0.1)}),
    "contours_compare": lambda: plot_contours_compare({"a": surface2d(), "b": surface2d(bowl())}),
    "measures": lambda: plot_measures({"a": {"trace": (1.0, 0.1)}}),
}


@pytest.mark.parametrize("name", list(ALL_PLOTS))
def test_every_plot_leaves_rcparams_unchanged_and_renders(name):
    before = rc_snapshot()
    out = ALL_PLOTS[name]()
    fig = out if isinstance(out, mpl.figure.Figure) else out.figure
    fig.canvas.draw()
    assert rc_snapshot() == before


@pytest.mark.parametrize("suffix", ["pdf", "svg", "png"])
def test_saving_an_unchanged_figure_again_leaves_the_file_untouched(tmp_path, suffix):
    fig, ax = plt.subplots()
    plot_heatmap(surface2d(), ax=ax)
    path = save_figure(fig, tmp_path / f"heatmap.{suffix}")
    first, stamp = path.read_bytes(), path.stat().st_mtime_ns
    os.utime(path, ns=(stamp - 10**9, stamp - 10**9))  # so that a rewrite would show
    save_figure(fig, path)
    assert path.read_bytes() == first and path.stat().st_mtime_ns == stamp - 10**9
    ax.set_title("changed")
    save_figure(fig, path)
    assert path.read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left
    plt.close(fig)


def test_save_figure(tmp_path):
    fig, ax = plt.subplots()
    plot_heatmap(surface2d(), ax=ax)
    with landscape_style():
        path = save_figure(fig, tmp_path / "sub" / "heatmap.pdf")
    assert path.exists() and path.stat().st_size > 0
    assert path.read_bytes().startswith(b"%PDF")
