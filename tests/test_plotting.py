"""Tests of landscape.plotting: inspect the artists (data, labels, limits), never images."""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import LogNorm

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

mpl.use("Agg")  # no display in tests; figures are inspected, never shown

# A non-square grid and a function that is not symmetric in (x, y): a transposed array either
# fails on shapes or puts the lines in the wrong place.
X = np.linspace(-1.0, 2.0, 7)
Y = np.linspace(-0.5, 0.5, 4)


def asym(x, y):
    return x[:, None] + 10.0 * y[None, :]  # [i, j] = f(x[i], y[j])


def surface2d(z=None, **attrs) -> Surface:
    z = asym(X, Y) if z is None else z
    return Surface(x=X, y=Y, metrics={"loss": z}, attrs=attrs)


def bowl() -> np.ndarray:
    return 0.1 + X[:, None] ** 2 + 3.0 * Y[None, :] ** 2


def rc_snapshot() -> dict:
    return {k: v for k, v in mpl.rcParams.items() if k != "backend"}


@pytest.fixture(autouse=True)
def close_figures_and_check_rc():
    """Close every figure after each test, and check no test leaks an rcParams change."""
    before = rc_snapshot()
    yield
    plt.close("all")
    assert rc_snapshot() == before


@pytest.fixture
def ax():
    return plt.figure().add_subplot()


def center_markers(ax):
    return [
        line
        for line in ax.lines
        if line.get_marker() == "*" and np.allclose(line.get_xydata(), [[0.0, 0.0]])
    ]


def bar_container(ax):
    return next(c for c in ax.containers if isinstance(c, mpl.container.BarContainer))


# ------------------------------------------------------------------------------ orientation


def test_contour_lines_lie_where_the_function_has_that_value(ax):
    s = surface2d()
    plot_contour(s, ax=ax, levels=[-2.0, 0.0, 3.0])
    cs = ax.collections[0]
    for level, path in zip(cs.levels, cs.get_paths(), strict=True):
        v = path.vertices
        assert len(v) > 0
        # f is linear, so contour interpolation is exact: every vertex has f(x, y) == level.
        np.testing.assert_allclose(v[:, 0] + 10.0 * v[:, 1], level, atol=1e-9)
    assert ax.get_xlim() == pytest.approx((X[0], X[-1]))
    assert ax.get_ylim() == pytest.approx((Y[0], Y[-1]))


def test_contourf_orientation_on_non_square_grid(ax):
    plot_contourf(surface2d(), ax=ax, levels=8)
    cs = ax.collections[0]
    assert cs.filled
    assert ax.get_xlim() == pytest.approx((X[0], X[-1]))
    assert ax.get_ylim() == pytest.approx((Y[0], Y[-1]))
    assert cs.zmin == pytest.approx(asym(X, Y).min())
    assert cs.zmax == pytest.approx(asym(X, Y).max())


def test_heatmap_orientation_and_extent(ax):
    z = asym(X, Y)
    plot_heatmap(surface2d(), ax=ax)
    mesh = ax.collections[0]
    arr = np.asarray(mesh.get_array()).reshape(len(Y), len(X))
    np.testing.assert_allclose(arr, z.T)  # row j, column i holds f(x[i], y[j])
    corners = mesh.get_coordinates()  # (ny + 1, nx + 1, 2) cell edges
    centres_x = 0.5 * (corners[0, :-1, 0] + corners[0, 1:, 0])
    centres_y = 0.5 * (corners[:-1, 0, 1] + corners[1:, 0, 1])
    np.testing.assert_allclose(centres_x, X)
    np.testing.assert_allclose(centres_y, Y)
    dx, dy = X[1] - X[0], Y[1] - Y[0]
    assert ax.get_xlim() == pytest.approx((X[0] - dx / 2, X[-1] + dx / 2))
    assert ax.get_ylim() == pytest.approx((Y[0] - dy / 2, Y[-1] + dy / 2))


def test_surface3d_orientation_and_values():
    z = asym(X, Y)
    ax = plot_surface3d(surface2d())
    assert ax.name == "3d"
    poly = ax.collections[0]
    # face colours come from the mean of each quad's four corners
    zt = z.T
    faces = (zt[:-1, :-1] + zt[1:, :-1] + zt[:-1, 1:] + zt[1:, 1:]) / 4
    np.testing.assert_allclose(np.sort(np.asarray(poly.get_array())), np.sort(faces.ravel()))
    lo, hi = ax.get_zlim()
    assert lo <= z.min() and hi >= z.max()
    assert ax.get_xlabel() == "x" and ax.get_ylabel() == "y" and ax.get_zlabel() == "loss"


# ------------------------------------------------------------------------------ levels


def test_linear_levels_by_default(ax):
    plot_contourf(surface2d(bowl()), ax=ax)
    cs = ax.collections[0]
    assert len(cs.levels) == 20
    np.testing.assert_allclose(np.diff(cs.levels), np.diff(cs.levels)[0])
    assert cs.levels[0] == pytest.approx(bowl().min())
    assert cs.levels[-1] == pytest.approx(bowl().max())
    assert not isinstance(cs.norm, LogNorm)


def test_contour_lines_skip_the_ends_of_the_range(ax):
    plot_contour(surface2d(bowl()), ax=ax, levels=4)
    cs = ax.collections[0]
    lo, hi = bowl().min(), bowl().max()
    np.testing.assert_allclose(cs.levels, np.linspace(lo, hi, 6)[1:-1])
    assert (cs.norm.vmin, cs.norm.vmax) == pytest.approx((lo, hi))


def test_log_levels_when_data_span_decades(ax):
    z = 10.0 ** (4.0 * bowl() / bowl().max() - 1)  # about 4 decades
    plot_contourf(surface2d(z), ax=ax)
    cs = ax.collections[0]
    assert isinstance(cs.norm, LogNorm)
    ratios = cs.levels[1:] / cs.levels[:-1]
    np.testing.assert_allclose(ratios, ratios[0])
    assert cs.levels[0] == pytest.approx(z.min())
    assert cs.levels[-1] == pytest.approx(z.max())


def test_log_forced_and_refused(ax):
    plot_contour(surface2d(bowl()), ax=ax, log=True, levels=5)
    cs = ax.collections[0]
    assert isinstance(cs.norm, LogNorm)
    np.testing.assert_allclose(cs.levels, np.geomspace(bowl().min(), bowl().max(), 7)[1:-1])
    z = 10.0 ** (4.0 * bowl() / bowl().max() - 1)
    _, ax2 = plt.subplots()
    plot_contour(surface2d(z), ax=ax2, log=False)
    assert not isinstance(ax2.collections[0].norm, LogNorm)


def test_user_levels_int_and_array(ax):
    plot_contour(surface2d(bowl()), ax=ax, levels=7)
    assert len(ax.collections[0].levels) == 7
    _, ax2 = plt.subplots()
    plot_contour(surface2d(bowl()), ax=ax2, levels=[0.5, 1.0, 2.0])
    np.testing.assert_allclose(ax2.collections[0].levels, [0.5, 1.0, 2.0])


@pytest.mark.parametrize("levels", [[2.0, 1.0], [1.0], 1, [0.0, np.nan]])
def test_bad_levels_raise(ax, levels):
    with pytest.raises(ValueError, match="levels"):
        plot_contourf(surface2d(bowl()), ax=ax, levels=levels)
    with pytest.raises(ValueError, match="levels"):
        plot_contour(surface2d(bowl()), ax=ax, levels=0)


def test_vmin_vmax_set_level_range_and_extend(ax):
    plot_contourf(surface2d(bowl()), ax=ax, vmin=0.5, vmax=2.0, levels=4)
    cs = ax.collections[0]
    np.testing.assert_allclose(cs.levels, np.linspace(0.5, 2.0, 4))
    assert cs.extend == "both"


def test_constant_metric_does_not_crash(ax):
    plot_contour(surface2d(np.full((len(X), len(Y)), 2.0)), ax=ax)
    levels = ax.collections[0].levels
    assert levels[0] < 2.0 < levels[-1]  # widened around the constant value
    _, ax2 = plt.subplots()
    plot_heatmap(surface2d(np.full((len(X), len(Y)), 2.0)), ax=ax2)


# ------------------------------------------------------------------------------ non-finite


def nasty() -> np.ndarray:
    z = bowl().copy()
    z[0, 0] = np.nan
    z[1, 2] = np.inf
    z[3, 1] = -np.inf
    z[6, 3] = np.nan
    return z


@pytest.mark.parametrize(
    "plot",
    [plot_contour, plot_contourf, plot_heatmap, plot_surface3d],
    ids=["contour", "contourf", "heatmap", "surface3d"],
)
def test_non_finite_values_are_masked(plot):
    z = nasty()
    finite = z[np.isfinite(z)]
    ax = plot(surface2d(z))
    artist = ax.collections[0]
    if hasattr(artist, "levels"):
        assert np.all(np.isfinite(artist.levels))
        assert finite.min() <= artist.levels[0] < artist.levels[-1] <= finite.max()
    assert artist.norm.vmin == pytest.approx(finite.min())
    assert artist.norm.vmax == pytest.approx(finite.max())
    if plot is plot_heatmap:
        arr = artist.get_array()
        assert np.ma.count_masked(arr) == 4
    ax.figure.canvas.draw()  # rendering must not fail either


def test_non_finite_values_in_line_and_log(ax):
    loss = np.array([np.inf, 1e3, 1.0, 0.1, np.nan, 10.0, 1e4])
    s = Surface(x=X, y=None, metrics={"loss": loss})
    plot_line(s, ax=ax)
    assert ax.get_yscale() == "log"  # finite values span five decades
    y = ax.lines[0].get_ydata()
    assert np.isnan(y[0]) and np.isnan(y[4])
    ax.figure.canvas.draw()


def test_log_scale_masks_non_positive_values_with_a_warning(ax):
    z = bowl().copy()
    z[2, 2] = -1.0
    with pytest.warns(UserWarning, match="<= 0"):
        plot_heatmap(surface2d(z), ax=ax, log=True)
    assert np.ma.count_masked(ax.collections[0].get_array()) == 1


@pytest.mark.parametrize(
    "plot",
    [plot_contour, plot_contourf, plot_heatmap, plot_surface3d, plot_convexity],
    ids=["contour", "contourf", "heatmap", "surface3d", "convexity"],
)
def test_all_nan_metric_raises(plot):
    z = np.full((len(X), len(Y)), np.nan)
    s = Surface(x=X, y=Y, metrics={"loss": z, "convexity": z})
    metric = "convexity" if plot is plot_convexity else "loss"
    with pytest.raises(ValueError, match="finite"):
        plot(s, metric=metric)


def test_all_nan_line_raises(ax):
    s = Surface(x=X, y=None, metrics={"loss": np.full(len(X), np.nan)})
    with pytest.raises(ValueError, match="no finite values"):
        plot_line(s, ax=ax)


# ------------------------------------------------------------------------------ decorations


def test_colour_bar_labels_and_centre(ax):
    s = surface2d(bowl(), x_label="d1 (filter-normalized)", y_label="d2")
    plot_contour(s, ax=ax)
    cs = ax.collections[0]
    assert cs.colorbar is not None
    assert cs.colorbar.ax.get_ylabel() == "loss"
    assert len(ax.figure.axes) == 2
    assert ax.get_xlabel() == "d1 (filter-normalized)"
    assert ax.get_ylabel() == "d2"
    assert len(center_markers(ax)) == 1


def test_no_colour_bar_and_no_centre_when_asked(ax):
    plot_contourf(surface2d(bowl()), ax=ax, colorbar=False, mark_center=False)
    assert len(ax.figure.axes) == 1
    assert ax.collections[0].colorbar is None
    assert center_markers(ax) == []


def test_centre_not_marked_when_outside_grid(ax):
    x = np.linspace(1.0, 2.0, 5)
    s = Surface(x=x, y=Y, metrics={"loss": np.add.outer(x, Y)})
    plot_heatmap(s, ax=ax)
    assert center_markers(ax) == []
    assert ax.collections[0].colorbar is not None


def test_default_axis_labels(ax):
    plot_heatmap(surface2d(), ax=ax)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x", "y")


def test_inline_labels(ax):
    plot_contour(surface2d(bowl()), ax=ax, levels=4, inline_labels=True)
    assert len(ax.texts) > 0


def test_plots_draw_on_given_axes_without_new_figures(ax):
    n = len(plt.get_fignums())
    plot_contour(surface2d(), ax=ax, colorbar=False)
    plot_heatmap(surface2d(), ax=ax, colorbar=False)
    assert len(plt.get_fignums()) == n
    assert len(ax.collections) == 2


def test_1d_surface_refused_by_2d_plots(ax):
    s = Surface(x=X, y=None, metrics={"loss": X**2})
    for plot in (plot_contour, plot_contourf, plot_heatmap, plot_surface3d):
        with pytest.raises(ValueError, match="2D"):
            plot(s)


def test_wrong_metric_shape_and_unknown_metric(ax):
    s = Surface(x=X, y=Y, metrics={"loss": np.zeros((len(Y), len(X)))})
    with pytest.raises(ValueError, match="shape"):
        plot_contour(s, ax=ax)
    with pytest.raises(KeyError, match="accuracy"):
        plot_contour(surface2d(), "accuracy", ax=ax)


# ------------------------------------------------------------------------------ line


def test_line_with_accuracy_on_twin_axis(ax):
    loss, acc = X**2 + 0.5, 1.0 - 0.1 * X**2
    s = Surface(x=X, y=None, metrics={"loss": loss, "accuracy": acc}, attrs={"x_label": "alpha"})
    out = plot_line(s, ax=ax)
    assert out is ax
    np.testing.assert_allclose(ax.lines[0].get_xydata(), np.c_[X, loss])
    assert ax.get_xlabel() == "alpha" and ax.get_ylabel() == "loss"
    assert ax.get_yscale() == "linear"
    right = ax.right_ax
    assert right is not ax and right.get_ylabel() == "accuracy"
    np.testing.assert_allclose(right.lines[0].get_ydata(), acc)
    assert len(ax.figure.axes) == 2


def test_line_without_accuracy_and_forced_log(ax):
    s = Surface(x=X, y=None, metrics={"loss": X**2 + 0.5})
    plot_line(s, ax=ax, log=True)
    assert ax.get_yscale() == "log"
    assert not hasattr(ax, "right_ax")
    assert len(ax.figure.axes) == 1


def test_line_refuses_2d_and_three_metrics(ax):
    with pytest.raises(ValueError, match="1D"):
        plot_line(surface2d(), ax=ax)
    s = Surface(x=X, y=None, metrics={"loss": X**2})
    with pytest.raises(ValueError, match="one or two"):
        plot_line(s, ("loss", "accuracy", "other"), ax=ax)


# ------------------------------------------------------------------------------ 3D


def test_surface3d_refuses_a_2d_axes(ax):
    with pytest.raises(TypeError, match="3D axes"):
        plot_surface3d(surface2d(), ax=ax)


def test_surface3d_uses_given_axes_and_clips_range():
    ax3 = plt.figure().add_subplot(projection="3d")
    z = bowl()
    out = plot_surface3d(surface2d(z), ax=ax3, vmax=1.0, log=True, colorbar=False)
    assert out is ax3
    assert ax3.get_zlabel() == "log10(loss)"
    faces = np.asarray(ax3.collections[0].get_array())
    assert np.nanmax(faces) <= 0.0 + 1e-12  # log10(1.0): values above vmax are not drawn


# ------------------------------------------------------------------------------ convexity


def test_convexity_map(ax):
    ratio = np.abs(asym(X, Y)) / 10.0
    s = Surface(x=X, y=Y, metrics={"loss": bowl(), "convexity": ratio})
    plot_convexity(s, ax=ax)
    mesh = ax.collections[0]
    assert mesh.norm.vmin == 0.0 and mesh.norm.vmax == 1.0
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(len(Y), len(X)), ratio.T)
    assert mesh.colorbar is not None
    assert mesh.colorbar.extend == ("max" if ratio.max() > 1 else "neither")


def test_convexity_log_and_line(ax):
    ratio = 10.0 ** np.linspace(-4, 0, len(X) * len(Y)).reshape(len(X), len(Y))
    s = Surface(x=X, y=Y, metrics={"convexity": ratio})
    plot_convexity(s, ax=ax, log=True)
    assert isinstance(ax.collections[0].norm, LogNorm)
    _, ax2 = plt.subplots()
    line = Surface(x=X, y=None, metrics={"convexity": np.abs(X) / 2})
    plot_convexity(line, ax=ax2)
    np.testing.assert_allclose(ax2.lines[0].get_ydata(), np.abs(X) / 2)


# ------------------------------------------------------------------------------ spectra


def test_spectral_density_clips_zeros_to_floor(ax):
    grid = np.linspace(-1, 5, 61)
    density = np.exp(-((grid - 1) ** 2))
    density[:10] = 0.0
    density[20] = -1e-9  # quadrature noise
    plot_spectral_density(grid, density, ax=ax, label="model")
    y = ax.lines[0].get_ydata()
    floor = 1e-8 * density.max()
    assert ax.get_yscale() == "log"
    assert np.all(y >= floor)
    np.testing.assert_allclose(y[:10], floor)
    np.testing.assert_allclose(y[30:], density[30:])
    assert ax.get_ylim()[0] == pytest.approx(floor)
    assert ax.get_xlabel() == "eigenvalue"


def test_spectral_density_checks(ax):
    with pytest.raises(ValueError, match="same length"):
        plot_spectral_density(np.arange(3), np.ones(4), ax=ax)
    with pytest.raises(ValueError, match="positive"):
        plot_spectral_density(np.arange(3), np.ones(3), ax=ax, floor=0.0)


def test_eigenvalues_bars_and_errors(ax):
    values = np.array([12.0, 5.0, -0.5])
    errors = np.array([0.5, np.nan, 0.1])
    plot_eigenvalues(values, ax=ax, errors=errors)
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, values)
    np.testing.assert_allclose([p.get_x() + p.get_width() / 2 for p in ax.patches], [1, 2, 3])
    segments = bar_container(ax).errorbar.lines[2][0].get_segments()  # vertical error bars
    half = [np.ptp(seg[:, 1]) / 2 for seg in segments if seg.size]
    np.testing.assert_allclose(half, [0.5, 0.1])
    with pytest.raises(ValueError, match="shape"):
        plot_eigenvalues(values, ax=ax, errors=[1.0])


def test_eigenvalues_log(ax):
    plot_eigenvalues([100.0, 10.0, 1.0], ax=ax, log=True)
    assert ax.get_yscale() == "log"
    _, ax2 = plt.subplots()
    plot_eigenvalues([100.0, -1.0], ax=ax2, log=True)
    assert ax2.get_yscale() == "symlog"


# ------------------------------------------------------------------------------ comparisons


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
    assert [ax.get_title() for ax in fig.axes] == ["lambda_max", "trace"]
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


# ------------------------------------------------------------------------------ style, rcParams


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


def test_save_figure(tmp_path):
    fig, ax = plt.subplots()
    plot_heatmap(surface2d(), ax=ax)
    with landscape_style():
        path = save_figure(fig, tmp_path / "sub" / "heatmap.pdf")
    assert path.exists() and path.stat().st_size > 0
    assert path.read_bytes().startswith(b"%PDF")


def test_fixed_line_colours_replace_the_colour_map(ax):
    plot_contour(surface2d(bowl()), ax=ax, colors="k", colorbar=False)
    np.testing.assert_allclose(ax.collections[0].get_edgecolor()[:, :3], 0.0)  # all black
    fig = plot_contours_compare({"a": surface2d(bowl())}, colors="k", colorbar=False)
    assert len(fig.axes) == 1


def test_line_same_metric_twice_draws_once_on_a_plain_figure():
    from matplotlib.figure import Figure

    fig = Figure()
    s = Surface(x=X, y=None, metrics={"loss": X**2, "accuracy": 1 - X**2 / 4})
    ax = plot_line(s, ("accuracy", "accuracy"), fig.add_subplot())
    assert len(fig.axes) == 1 and ax.get_ylabel() == "accuracy"
