"""Tests of landscape.plotting.comparisons: inspect the artists (data, labels, limits)."""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pytest
from _plotting_helpers import (
    bar_container,
    bowl,
    surface2d,
)
from matplotlib.colors import LogNorm

from landscape.plotting import (
    landscape_style,
    plot_contours_compare,
    plot_lines_compare,
    plot_measures,
)
from landscape.surface import Surface

pytestmark = pytest.mark.usefixtures("figures_closed_rc_unchanged")


def test_lines_compare_bands(ax):
    x = np.linspace(-1, 1, 11)
    curves = {
        "sgd": (x, x**2 + 1, 0.1 * np.ones_like(x)),
        "adam": (x, 3 * x**2 + 1, 0.2 * np.ones_like(x)),
        "single seed": (x, 2 * x**2 + 1),
    }
    plot_lines_compare(curves, ax=ax, x_label="alpha")
    assert [line.get_label() for line in ax.lines] == list(curves)
    assert len(ax.collections) == 2  # one band per curve with a spread
    for (_, mean, spread), line, band in zip(
        list(curves.values())[:2], ax.lines, ax.collections, strict=False
    ):
        ys = band.get_paths()[0].vertices[:, 1]
        assert ys.min() == pytest.approx((mean - spread).min())
        assert ys.max() == pytest.approx((mean + spread).max())
        np.testing.assert_allclose(band.get_facecolor()[0][:3], mpl.colors.to_rgb(line.get_color()))
    assert ax.get_legend() is not None
    assert ax.get_xlabel() == "alpha" and ax.get_ylabel() == "loss"


def test_lines_compare_non_finite_and_errors(ax):
    x = np.linspace(-1, 1, 5)
    mean = np.array([np.inf, 1.0, 0.5, np.nan, 2.0])
    plot_lines_compare({"a": (x, mean, 0.1 * np.ones(5))}, ax=ax)
    ax.figure.canvas.draw()
    with pytest.raises(ValueError, match="empty"):
        plot_lines_compare({}, ax=ax)
    with pytest.raises(ValueError, match="same length"):
        plot_lines_compare({"a": (x, mean[:3], None)}, ax=ax)


def test_contours_compare_share_levels_and_one_colour_bar():
    a = surface2d(bowl())
    b = surface2d(10 * bowl())
    fig = plot_contours_compare({"sgd": a, "adam": b}, filled=True)
    panels = [ax for ax in fig.axes if ax.collections]
    assert [ax.get_title() for ax in panels[:2]] == ["sgd", "adam"]
    sets = [ax.collections[0] for ax in panels[:2]]
    np.testing.assert_array_equal(sets[0].levels, sets[1].levels)
    assert sets[0].norm.vmin == sets[1].norm.vmin and sets[0].norm.vmax == sets[1].norm.vmax
    # the shared levels cover both surfaces together
    assert sets[0].levels[0] == pytest.approx(bowl().min())
    assert sets[0].levels[-1] == pytest.approx(10 * bowl().max())
    assert len(fig.axes) == 3  # two panels + one colour bar
    assert sum(cs.colorbar is not None for cs in sets) == 1


def test_contours_compare_log_shared_and_given_axes():
    a = surface2d(bowl())
    b = surface2d(1000 * bowl())
    fig, axes = plt.subplots(1, 2)
    out = plot_contours_compare({"a": a, "b": b}, axes=axes, levels=6)
    assert out is fig
    for ax in axes:
        assert isinstance(ax.collections[0].norm, LogNorm)  # pooled data span > 2 decades
        assert len(ax.collections[0].levels) == 6
    with pytest.raises(ValueError, match="axes"):
        plot_contours_compare({"a": a, "b": b}, axes=[axes[0]])
    with pytest.raises(ValueError, match="empty"):
        plot_contours_compare({})


def test_contours_compare_grid_layout():
    s = surface2d(bowl())
    fig = plot_contours_compare({k: s for k in "abc"}, ncols=2, colorbar=False)
    assert len(fig.axes) == 3  # the unused fourth cell is removed


def test_measures_panels_bars_and_errors():
    class Result:  # like a sharpness result: value and stderr attributes
        value, stderr = 7.0, 0.7

    table = {
        "sgd": {"lambda_max": (10.0, 1.0), "trace": (100.0, 5.0)},
        "adam": {"lambda_max": (30.0, 2.0), "trace": Result()},
        "swa": {"lambda_max": 4.0},
    }
    fig = plot_measures(table)
    assert [ax.get_title() for ax in fig.axes] == ["top Hessian eigenvalue", "Hessian trace"]
    lam, trace = fig.axes
    np.testing.assert_allclose([p.get_height() for p in lam.patches], [10.0, 30.0, 4.0])
    assert [t.get_text() for t in lam.get_xticklabels()] == ["sgd", "adam", "swa"]
    heights = [p.get_height() for p in trace.patches]
    np.testing.assert_allclose(heights, [100.0, 7.0, np.nan])
    segments = bar_container(lam).errorbar.lines[2][0].get_segments()
    half = [np.ptp(seg[:, 1]) / 2 for seg in segments if seg.size]
    np.testing.assert_allclose(half, [1.0, 2.0])


def test_measures_selection_and_errors():
    table = {"a": {"x": (1.0, 0.1), "y": (2.0, 0.2)}}
    fig = plot_measures(table, ["y"])
    assert [ax.get_title() for ax in fig.axes] == ["y"]
    with pytest.raises(ValueError, match="no checkpoint"):
        plot_measures(table, ["z"])
    with pytest.raises(ValueError, match="empty"):
        plot_measures({})


def test_contours_compare_share_one_colour_scale_by_default():
    a, b = surface2d(bowl()), surface2d(3.0 * bowl())
    fig = plot_contours_compare({"a": a, "b": b})
    sets = [ax.collections[0] for ax in fig.axes[:2]]
    np.testing.assert_array_equal(sets[0].levels, sets[1].levels)
    # the same level has the same colour in both panels, and the one colour bar has that scale
    np.testing.assert_array_equal(sets[0].get_edgecolor(), sets[1].get_edgecolor())
    (bar,) = [cs.colorbar for cs in sets if cs.colorbar is not None]
    assert (bar.norm.vmin, bar.norm.vmax) == (sets[1].norm.vmin, sets[1].norm.vmax)
    # the shared levels reach into the higher surface's range, above the lower one's maximum
    assert sets[0].levels[-1] > bowl().max() and sets[0].norm.vmax == pytest.approx(
        3 * bowl().max()
    )


def test_measures_have_y_labels_and_say_what_the_error_bars_are():
    table = {"sgd": {"lambda_max": (10.0, 1.0), "trace": 50.0}, "adam": {"lambda_max": 30.0}}
    fig = plot_measures(table)
    assert [ax.get_ylabel() for ax in fig.axes] == [r"$\lambda_{\max}$", r"$\mathrm{tr}\,H$"]
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["error bars: ±1 standard error"]
    fig = plot_measures(
        table, y_labels={"trace": "Hessian trace"}, error_bars="95% confidence interval"
    )
    assert [ax.get_ylabel() for ax in fig.axes] == [r"$\lambda_{\max}$", "Hessian trace"]
    assert fig.legends[0].get_texts()[0].get_text() == "error bars: 95% confidence interval"
    fig = plot_measures({"a": {"trace": 1.0}, "b": {"trace": (2.0, np.nan)}})
    assert fig.legends == []  # no error bar drawn, nothing to explain
    fig.canvas.draw()


def test_lines_compare_legend_says_what_the_bands_are(ax):
    x = np.linspace(-1, 1, 5)
    curves = {"sgd": (x, x**2, 0.1 + 0 * x), "adam": (x, 2 * x**2, None)}
    plot_lines_compare(curves, ax=ax)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == ["sgd", "adam", "shaded: ±1 standard deviation"]
    ax.clear()
    plot_lines_compare(curves, ax=ax, band="±2 standard errors over 3 seeds")
    assert ax.get_legend().get_texts()[-1].get_text() == "shaded: ±2 standard errors over 3 seeds"
    ax.clear()
    plot_lines_compare({"adam": (x, 2 * x**2, None)}, ax=ax)  # no band: nothing to explain
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["adam"]


def test_contours_compare_tick_labels_do_not_run_together():
    """The demo's panels: two 3.2-inch panels of -1 .. 1; labels of neighbouring ticks keep
    apart (before, nine labels such as -0.75 touched)."""
    x = np.linspace(-1, 1, 21)
    s = Surface(x=x, y=x, metrics={"loss": np.add.outer(x**2, x**2) + 0.1})
    with landscape_style():
        panels = plt.figure(figsize=(7.4, 3), layout="constrained")
        fig = plot_contours_compare({"a": s, "b": s}, fig=panels)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes[:2]:
            labels = [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
            assert len(labels) >= 3
            boxes = sorted((b.x0, b.x1) for b in (t.get_window_extent(renderer) for t in labels))
            gaps = [left - right for (_, right), (left, _) in zip(boxes, boxes[1:], strict=False)]
            em = labels[0].get_fontsize() * fig.dpi / 72
            assert min(gaps) > 0.5 * em, gaps


def test_every_contract_measure_is_named_in_words_in_figures():
    from landscape.plotting.labels import MEASURE_LABELS, measure_axis_label, measure_title
    from landscape.sharpness import MEASURES

    assert set(MEASURES) <= set(MEASURE_LABELS)
    for name in MEASURES:
        assert "_" not in measure_title(name) and measure_title(name) != name
    assert (measure_title("mine"), measure_axis_label("mine")) == ("mine", "mine")
    fig = plot_measures({"a": {name: 1.0 for name in MEASURES}})
    titles = [ax.get_title().replace("\n", " ") for ax in fig.axes]
    assert titles == [measure_title(n) for n in MEASURES]
    assert [ax.get_ylabel() for ax in fig.axes] == [measure_axis_label(n) for n in MEASURES]
