"""Tests of landscape.plotting.surfaces: inspect the artists (data, labels, limits)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from _plotting_helpers import (
    X,
    Y,
    asym,
    bowl,
    center_markers,
    nasty,
    surface2d,
)
from matplotlib.colors import LogNorm

from landscape.plotting import (
    landscape_style,
    plot_contour,
    plot_contourf,
    plot_contours_compare,
    plot_convexity,
    plot_heatmap,
    plot_line,
    plot_surface3d,
)
from landscape.surface import Surface

pytestmark = pytest.mark.usefixtures("figures_closed_rc_unchanged")


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


def assert_round(levels):
    """Evenly spaced levels at integer multiples of a step of 1, 2, 2.5 or 5 times 10**k."""
    step = np.diff(levels)
    np.testing.assert_allclose(step, step[0], rtol=1e-9)
    mantissa = step[0] / 10.0 ** np.floor(np.log10(step[0]))
    assert min(abs(mantissa - m) for m in (1.0, 2.0, 2.5, 5.0)) < 1e-9, levels
    np.testing.assert_allclose(levels / step[0], np.round(levels / step[0]), atol=1e-9)
    return step[0]


def test_linear_levels_are_round_and_the_lowest_lies_below_the_minimum(ax):
    z = bowl()  # min 0.1833 at (0, +-1/6), max 4.85: no level of 0.1 can be round
    plot_contourf(surface2d(z), ax=ax)
    cs = ax.collections[0]
    assert not isinstance(cs.norm, LogNorm)
    step = assert_round(cs.levels)
    assert 10 <= len(cs.levels) <= 22  # about the default 20
    # the minimum lies strictly inside the lowest band, the maximum inside the highest
    assert cs.levels[0] < z.min() < cs.levels[1]
    assert cs.levels[-2] < z.max() <= cs.levels[-1]
    assert step == pytest.approx(0.25)
    # so the minimum's region is drawn: the lowest band holds the grid point of the minimum
    i, j = np.unravel_index(np.argmin(z), z.shape)
    assert cs.get_paths()[0].contains_point((X[i], Y[j]))
    assert (cs.norm.vmin, cs.norm.vmax) == pytest.approx((cs.levels[0], cs.levels[-1]))


def test_minimum_on_a_round_number_gets_a_level_below_it(ax):
    z = bowl() - bowl().min()  # the minimum is exactly 0.0
    plot_contourf(surface2d(z), ax=ax, levels=6)
    levels = ax.collections[0].levels
    step = assert_round(levels)
    assert levels[0] == pytest.approx(-step) and levels[1] == 0.0
    assert len(levels) <= 8


def test_contour_lines_are_round_and_the_lowest_encloses_the_minimum(ax):
    z = bowl()
    plot_contour(surface2d(z), ax=ax, levels=8)
    cs = ax.collections[0]
    step = assert_round(cs.levels)
    lo, hi = z.min(), z.max()
    assert len(cs.levels) <= 10
    # every line lies strictly inside the value range (at an end a line is only a point)
    assert lo < cs.levels[0] and cs.levels[-1] < hi
    # the lowest line is the first round value above the minimum: it encloses the minimum
    assert cs.levels[0] - step <= lo
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
    plot_contourf(surface2d(bowl()), ax=ax, levels=7)
    levels = ax.collections[0].levels
    assert_round(levels)
    assert 4 <= len(levels) <= 8  # about 7 round levels
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
    lo, hi = finite.min(), finite.max()
    if getattr(artist, "filled", False):  # the bands enclose every finite value
        levels = artist.levels
        assert np.all(np.isfinite(levels))
        assert levels[0] < lo and hi <= levels[-1]
        lo, hi = levels[0], levels[-1]
    elif hasattr(artist, "levels"):  # the lines lie inside the finite range
        assert np.all(np.isfinite(artist.levels))
        assert lo < artist.levels[0] < artist.levels[-1] < hi
    assert artist.norm.vmin == pytest.approx(lo)
    assert artist.norm.vmax == pytest.approx(hi)
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


def test_line_right_axis_has_its_spine_in_the_landscape_style():
    s = Surface(x=X, y=None, metrics={"loss": X**2 + 0.5, "accuracy": 1.0 - 0.1 * X**2})
    with landscape_style():  # the style hides right spines: the twin axis keeps its own
        ax = plot_line(s, ax=plt.figure().add_subplot())
    assert ax.right_ax.spines["right"].get_visible()
    assert not ax.spines["right"].get_visible()  # the left axes keeps the style
    assert ax.right_ax.get_yticks().size > 0


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


# ------------------------------------------------------------------------------ figures agree


def four_decades() -> np.ndarray:
    return 10.0 ** (4.0 * bowl() / bowl().max() - 1)


def test_surface3d_uses_the_log_scale_the_contours_use():
    z = four_decades()
    _, ax2 = plt.subplots()
    plot_contour(surface2d(z), ax=ax2)
    assert isinstance(ax2.collections[0].norm, LogNorm)  # the contours chose a log scale
    ax = plot_surface3d(surface2d(z))  # log=None: the same choice, for height and colour
    poly = ax.collections[0]
    assert ax.get_zlabel() == "log10(loss)"
    assert poly.colorbar.ax.get_ylabel() == "log10(loss)"
    lz = np.log10(z).T
    faces = (lz[:-1, :-1] + lz[1:, :-1] + lz[:-1, 1:] + lz[1:, 1:]) / 4
    np.testing.assert_allclose(np.sort(np.asarray(poly.get_array())), np.sort(faces.ravel()))
    lo, hi = ax.get_zlim()  # heights are log10 values: about -1 .. 3, not up to 1000
    assert lo <= lz.min() and lz.max() <= hi < lz.max() + 1
    # a surface spanning less than two decades is linear in both
    _, ax3 = plt.subplots()
    plot_contour(surface2d(bowl()), ax=ax3)
    assert not isinstance(ax3.collections[0].norm, LogNorm)
    assert plot_surface3d(surface2d(bowl())).get_zlabel() == "loss"
    # and log=False keeps raw values for both
    assert plot_surface3d(surface2d(z), log=False).get_zlabel() == "loss"


def stars_3d(ax):
    return [line for line in ax.lines if line.get_marker() == "*"]


def test_surface3d_marks_the_checkpoint_at_its_height():
    # asym is linear, so the height at (0, 0), between the grid rows y = -1/6 and 1/6, is exact
    ax = plot_surface3d(surface2d())
    (star,) = stars_3d(ax)
    xs, ys, zs = star.get_data_3d()
    np.testing.assert_allclose([xs[0], ys[0], zs[0]], [0.0, 0.0, 0.0], atol=1e-12)
    assert star.get_zorder() > ax.collections[0].get_zorder() and not ax.computed_zorder
    # on a log scale the star sits at log10 of the value: 10 ** (0.5 * asym + 1) -> 1.0
    ax = plot_surface3d(surface2d(10.0 ** (0.5 * asym(X, Y) + 1.0)))
    assert ax.get_zlabel() == "log10(loss)"
    (star,) = stars_3d(ax)
    assert star.get_data_3d()[2][0] == pytest.approx(1.0)
    ax = plot_surface3d(surface2d(), mark_center=False)
    assert stars_3d(ax) == []
    x = np.linspace(1.0, 2.0, 5)  # the checkpoint is off the grid: no star
    ax = plot_surface3d(Surface(x=x, y=Y, metrics={"loss": np.add.outer(x, Y)}))
    assert stars_3d(ax) == []


def test_surface3d_star_left_out_where_the_centre_is_not_finite():
    z = asym(X, Y)
    z[2, 1:3] = np.nan  # x = 0, y = -1/6 and 1/6: the corners around (0, 0)
    ax = plot_surface3d(surface2d(z))
    assert stars_3d(ax) == []


def test_convexity_colour_bar_says_what_it_shows(ax):
    ratio = np.abs(asym(X, Y)) / 10.0
    plot_convexity(Surface(x=X, y=Y, metrics={"convexity": ratio}), ax=ax)
    label = ax.collections[0].colorbar.ax.get_ylabel()
    assert r"|\lambda_{\min} / \lambda_{\max}|" in label
    assert "higher = less convex" in label
    _, ax2 = plt.subplots()
    plot_convexity(Surface(x=X, y=None, metrics={"convexity": np.abs(X) / 2}), ax=ax2)
    assert ax2.get_ylabel() == label
    _, ax3 = plt.subplots()  # the mark of the checkpoint can be turned off, as on a heatmap
    plot_convexity(Surface(x=X, y=Y, metrics={"convexity": ratio}), ax=ax3, mark_center=False)
    assert center_markers(ax3) == []
