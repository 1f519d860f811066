"""Figures comparing checkpoints: overlaid lines, side-by-side contours, bars of measures."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.patches import Patch

from landscape.surface import Surface

from ._common import (
    add_colorbar,
    finite_or_nan,
    finite_values,
    get_ax,
    label_plane,
    prepare_contours,
    use_log,
)
from .labels import measure_axis_label, measure_title

__all__ = [
    "SPREAD_BAND",
    "STDERR_BARS",
    "plot_contours_compare",
    "plot_lines_compare",
    "plot_measures",
]

#: What the error bars of :func:`plot_measures` show by default (the stderr of each estimate).
STDERR_BARS = "±1 standard error"
#: What the bands of :func:`plot_lines_compare` show by default.
SPREAD_BAND = "±1 standard deviation"
#: Characters on a line of a panel's title in :func:`plot_measures` (longer ones wrap).
TITLE_WIDTH = 22
#: Most x ticks of a panel of :func:`plot_contours_compare` (more run together).
PANEL_X_TICKS = 5


def plot_lines_compare(
    curves: Mapping[str, Sequence[Any]],
    ax: Axes | None = None,
    *,
    log: bool | None = None,
    x_label: str = "x",
    y_label: str = "loss",
    alpha: float = 0.25,
    band: str = SPREAD_BAND,
) -> Axes:
    """Overlay 1D curves of several checkpoints, each with a shaded band ``mean +- spread``.

    Args:
        curves: ``{label: (x, mean, spread)}`` (``spread`` may be omitted or None, e.g. with one
            direction seed); the spread is typically the standard deviation across seeds.
        ax: axes to draw on; the current axes if None.
        log: log y axis; None chooses it when the finite positive means span > 2 decades.
        x_label, y_label: axis labels.
        alpha: opacity of the bands.
        band: what the bands show, for the legend (default ``"±1 standard deviation"``); say
            over what, e.g. ``"±1 standard deviation over 3 directions"``.

    Returns:
        The Axes, with a legend: the curves' labels, then ``"shaded: <band>"`` when a band is
        drawn; one line per curve in ``ax.lines`` and one band per curve with a spread in
        ``ax.collections``, in the order of ``curves``.

    Raises:
        ValueError: if ``curves`` is empty, shapes differ, or no mean has a finite value.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> x = np.linspace(-1, 1, 11)
        >>> fig, ax = plt.subplots()
        >>> curves = {"a": (x, x**2, 0.1 + 0 * x), "b": (x, 2 * x**2, None)}
        >>> ax = plot_lines_compare(curves, ax=ax)
        >>> len(ax.lines), len(ax.collections)
        (2, 1)
        >>> [t.get_text() for t in ax.get_legend().get_texts()]
        ['a', 'b', 'shaded: ±1 standard deviation']
        >>> plt.close(fig)
    """
    if not curves:
        raise ValueError("curves is empty; give {label: (x, mean, spread)}")
    ax = get_ax(ax)
    means = []
    banded = False
    for label, curve in curves.items():
        if len(curve) not in (2, 3):
            raise ValueError(f"curve {label!r} must be (x, mean) or (x, mean, spread)")
        x = np.asarray(curve[0], dtype=float)
        mean = np.asarray(curve[1], dtype=float)
        spread = None if len(curve) == 2 or curve[2] is None else np.asarray(curve[2], float)
        if x.ndim != 1 or mean.shape != x.shape or (spread is not None and spread.shape != x.shape):
            raise ValueError(f"curve {label!r}: x, mean and spread must be 1D of the same length")
        means.append(mean[np.isfinite(mean)])
        (line,) = ax.plot(x, finite_or_nan(mean), label=str(label))
        if spread is not None:
            banded = True
            mean_f, spread_f = finite_or_nan(mean), finite_or_nan(spread)
            ax.fill_between(
                x,
                mean_f - spread_f,
                mean_f + spread_f,
                color=line.get_color(),
                alpha=alpha,
                linewidth=0,
            )
    if use_log(finite_values(np.concatenate(means), "the means of curves"), log):
        ax.set_yscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    handles, labels = ax.get_legend_handles_labels()
    if banded:
        handles.append(Patch(color="0.5", alpha=alpha, linewidth=0))
        labels.append(f"shaded: {band}")
    ax.legend(handles, labels)
    return ax


def plot_contours_compare(
    surfaces: Mapping[str, Surface],
    metric: str = "loss",
    *,
    axes: Sequence[Axes] | None = None,
    fig: Figure | None = None,
    levels: int | Sequence[float] | None = None,
    log: bool | None = None,
    filled: bool = False,
    colorbar: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
    mark_center: bool = True,
    cmap: str = "viridis",
    ncols: int | None = None,
    **kwargs: Any,
) -> Figure:
    """Plot the contours of several 2D surfaces side by side on one shared colour scale.

    Levels, log choice and colour norm are computed once from the finite values of all surfaces
    together, so a colour and a line mean the same value in every panel; one colour bar serves
    all panels.

    Args:
        surfaces: ``{label: Surface}``; each label becomes a panel title.
        metric: name of the metric to draw.
        axes: one axes per surface to draw on; otherwise new axes are laid out in ``fig`` (or a new
            figure), ``ncols`` per row (default: all in one row).
        fig: figure to lay the panels out in, when ``axes`` is None.
        levels, log, filled, vmin, vmax, mark_center, cmap: as in
            :func:`~landscape.plotting.plot_contour`.
        colorbar: draw the shared colour bar.
        ncols: panels per row.
        **kwargs: passed to ``Axes.contour`` / ``Axes.contourf``.

    Returns:
        The Figure. Each panel's contour set has the same ``levels`` and ``norm``.

    Raises:
        ValueError: if ``surfaces`` is empty, ``axes`` has the wrong length, or no finite value.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> x, y = np.linspace(-1, 1, 5), np.linspace(-1, 1, 4)
        >>> a = Surface(x=x, y=y, metrics={"loss": np.add.outer(x**2, y**2)})
        >>> b = Surface(x=x, y=y, metrics={"loss": 3 * np.add.outer(x**2, y**2)})
        >>> fig = plot_contours_compare({"a": a, "b": b})
        >>> len(fig.axes)  # two panels and one colour bar
        3
        >>> plt.close(fig)
    """
    if not surfaces:
        raise ValueError("surfaces is empty; give {label: Surface}")
    labels, items = list(surfaces), list(surfaces.values())
    masked, lev, norm, extend = prepare_contours(
        items, metric, levels=levels, log=log, vmin=vmin, vmax=vmax, lines=not filled
    )
    if axes is None:
        cols = len(items) if ncols is None else max(1, min(int(ncols), len(items)))
        rows = -(-len(items) // cols)
        if fig is None:
            fig = plt.figure(figsize=(4.0 * cols + 1.0, 3.6 * rows), layout="constrained")
        grid = fig.subplots(rows, cols, squeeze=False)
        panel_axes = list(grid.ravel())
        for extra in panel_axes[len(items) :]:
            extra.remove()
        panel_axes = panel_axes[: len(items)]
    else:
        panel_axes = list(axes)
        if len(panel_axes) != len(items):
            raise ValueError(f"got {len(panel_axes)} axes for {len(items)} surfaces")
        fig = panel_axes[0].figure
    if "colors" not in kwargs:
        kwargs.setdefault("cmap", cmap)
    if filled:
        kwargs.setdefault("extend", extend)
    last = None
    for ax, label, surface, z in zip(panel_axes, labels, items, masked, strict=True):
        x, y = np.asarray(surface.x, float), np.asarray(surface.y, float)
        draw = ax.contourf if filled else ax.contour
        last = draw(x, y, z, levels=lev, norm=norm, **kwargs)
        label_plane(ax, surface, mark_center=mark_center)
        ax.set_title(str(label))
        ax.xaxis.set_major_locator(mticker.MaxNLocator(PANEL_X_TICKS))
    if colorbar and last is not None:
        add_colorbar(fig, last, panel_axes, metric)
    return fig


def _value_stderr(entry: Any) -> tuple[float, float]:
    """(value, stderr) from a tuple, a number, or an object with ``value``/``stderr``."""
    if hasattr(entry, "value"):
        return float(entry.value), float(getattr(entry, "stderr", np.nan))
    if isinstance(entry, (tuple, list)):
        if len(entry) != 2:
            raise ValueError(f"a measure entry must be (value, stderr), got {entry!r}")
        return float(entry[0]), float(entry[1])
    return float(entry), float("nan")


def plot_measures(
    table: Mapping[str, Mapping[str, Any]],
    measures: Sequence[str] | None = None,
    *,
    fig: Figure | None = None,
    ncols: int | None = None,
    y_labels: Mapping[str, str] | None = None,
    error_bars: str = STDERR_BARS,
) -> Figure:
    """Plot sharpness measures of several checkpoints: one small panel per measure, with error bars.

    Each measure has its own scale, so each gets its own axes (a figure-level helper, like
    seaborn's); within a panel there is one bar per checkpoint, with ``+- stderr``. Every panel
    has a y label, and when any error bar is drawn a figure legend says what the bars are.

    Args:
        table: ``{checkpoint_label: {measure: (value, stderr)}}``; an entry may also be a plain
            number (no error bar) or an object with ``value`` and ``stderr`` attributes. A missing
            or non-finite value leaves no bar.
        measures: which measures, in order; default: all, in order of first appearance.
        fig: figure to draw in; a new one if None.
        ncols: panels per row (default: up to 4).
        y_labels: ``{measure: y label}``; default: what the measure's value is (``lambda_max``:
            :math:`\\lambda_{\\max}`; see :mod:`landscape.plotting.labels`), else its name.
        error_bars: what the error bars show, for the legend (default ``"±1 standard error"``);
            pass the right words when the second entries are something else.

    Returns:
        The Figure; ``fig.axes[k]`` is the panel of ``measures[k]``, titled with what it is in
        words (``lambda_max``: "top Hessian eigenvalue"; a name not known: the name); the
        legend of the error bars, when drawn, is ``fig.legends[0]``.

    Raises:
        ValueError: if ``table`` is empty or a requested measure is in no checkpoint.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> fig = plot_measures({"sgd": {"trace": (10.0, 1.0)}, "adam": {"trace": (30.0, 2.0)}})
        >>> [(ax.get_title(), ax.get_ylabel()) for ax in fig.axes]
        [('Hessian trace', '$\\\\mathrm{tr}\\\\,H$')]
        >>> fig.legends[0].get_texts()[0].get_text()
        'error bars: ±1 standard error'
        >>> plt.close(fig)
    """
    if not table:
        raise ValueError("table is empty; give {checkpoint: {measure: (value, stderr)}}")
    if measures is None:
        measures = list(dict.fromkeys(m for row in table.values() for m in row))
    measures = list(measures)
    known = {m for row in table.values() for m in row}
    missing = [m for m in measures if m not in known]
    if missing or not measures:
        raise ValueError(
            f"measures {missing or measures} are in no checkpoint; have {sorted(known)}"
        )
    y_labels = dict(y_labels or {})
    checkpoints = list(table)
    cols = min(len(measures), 4) if ncols is None else max(1, min(int(ncols), len(measures)))
    rows = -(-len(measures) // cols)
    if fig is None:
        fig = plt.figure(figsize=(max(2.6 * cols, 3.0), 2.6 * rows + 0.4), layout="constrained")
    grid = fig.subplots(rows, cols, squeeze=False)
    panel_axes = list(grid.ravel())
    for extra in panel_axes[len(measures) :]:
        extra.remove()
    index = np.arange(len(checkpoints))
    colors = [f"C{k % 10}" for k in range(len(checkpoints))]
    error_handle = None
    for ax, measure in zip(panel_axes, measures, strict=False):
        pairs = [
            _value_stderr(table[c][measure]) if measure in table[c] else (np.nan, np.nan)
            for c in checkpoints
        ]
        values = finite_or_nan([p[0] for p in pairs])
        errs = finite_or_nan([p[1] for p in pairs])
        bars = ax.bar(index, values, yerr=errs, color=colors, capsize=3)
        if error_handle is None and np.isfinite(errs).any():
            error_handle = bars.errorbar
        ax.set_xticks(index, [str(c) for c in checkpoints], rotation=30, ha="right")
        ax.set_title(textwrap.fill(measure_title(measure), TITLE_WIDTH))
        ax.set_ylabel(y_labels.get(measure, measure_axis_label(measure)))
    if error_handle is not None:
        constrained = isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)
        fig.legend(
            [error_handle],
            [f"error bars: {error_bars}"],
            loc="outside lower center" if constrained else "lower center",
            frameon=False,
            fontsize="small",
        )
    return fig
