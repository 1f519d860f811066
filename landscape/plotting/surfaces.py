"""Figures of one surface: a line, contours, a heatmap, a 3D surface, a convexity map.

Every 2D plot draws the transpose of the ``[i, j]`` metric arrays (matplotlib wants rows along
y), masks non-finite values, and chooses a log scale the same way (``log=None``: when the finite
positive values span more than two decades), so the figures of one surface agree. Lines and
contours live here; heatmaps and the convexity map in :mod:`~landscape.plotting.heatmaps`, the 3D
surface in :mod:`~landscape.plotting.surface3d` (both importable from here as well).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from landscape.surface import Surface

from ._common import (
    add_colorbar,
    axis_labels,
    check_surface,
    finite_or_nan,
    finite_values,
    get_ax,
    label_plane,
    prepare_contours,
    use_log,
)
from .heatmaps import CONVEXITY_LABEL as CONVEXITY_LABEL
from .heatmaps import plot_convexity as plot_convexity
from .heatmaps import plot_heatmap as plot_heatmap
from .surface3d import plot_surface3d as plot_surface3d

__all__ = [
    "CONVEXITY_LABEL",
    "plot_contour",
    "plot_contourf",
    "plot_convexity",
    "plot_heatmap",
    "plot_line",
    "plot_surface3d",
]


def plot_line(
    surface: Surface,
    metrics: str | Sequence[str] = ("loss", "accuracy"),
    ax: Axes | None = None,
    *,
    log: bool | None = None,
    **kwargs: Any,
) -> Axes:
    """Plot a 1D surface: the first metric on the left axis, the second on a twin right axis.

    Args:
        surface: a 1D :class:`Surface` (``y is None``).
        metrics: one or two metric names; the first must exist, the second (by default
            ``"accuracy"``) is drawn on a twin axis only if the surface has it.
        ax: axes to draw on; the current axes if None.
        log: log scale for the first metric; None chooses it when its finite positive values span
            more than two decades.
        **kwargs: passed to ``Axes.plot`` for the first metric.

    Returns:
        The Axes of the first metric. The twin axes of the second metric, when drawn, is
        ``ax.right_ax`` (the pandas convention). Non-finite values leave gaps.

    Raises:
        ValueError: for a 2D surface, more than two metrics, or a first metric with no finite value.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> s = Surface(x=np.linspace(-1, 1, 5), y=None,
        ...             metrics={"loss": np.linspace(-1, 1, 5) ** 2 + 0.1})
        >>> fig, ax = plt.subplots()
        >>> plot_line(s, ax=ax).get_xlabel()
        'x'
        >>> plt.close(fig)
    """
    check_surface(surface)
    if surface.is_2d:
        raise ValueError("plot_line needs a 1D surface; use plot_contour or plot_heatmap for 2D")
    names = (metrics,) if isinstance(metrics, str) else tuple(dict.fromkeys(metrics))
    if not 1 <= len(names) <= 2:
        raise ValueError(f"plot_line draws one or two metrics, got {list(names)}")
    ax = get_ax(ax)
    x = np.asarray(surface.x, dtype=float)
    first = np.asarray(surface[names[0]], dtype=float)
    log_scale = use_log(finite_values(first, f"metric {names[0]!r}"), log)
    kwargs.setdefault("color", "C0")
    ax.plot(x, finite_or_nan(first), label=names[0], **kwargs)
    ax.set_xlabel(axis_labels(surface)[0])
    ax.set_ylabel(names[0], color=kwargs["color"])
    if log_scale:
        ax.set_yscale("log")
    if len(names) == 2 and names[1] in surface.metrics:
        second = np.asarray(surface[names[1]], dtype=float)
        right = ax.twinx()
        right.plot(x, finite_or_nan(second), color="C1", linestyle="--", label=names[1])
        right.set_ylabel(names[1], color="C1")
        right.spines["right"].set_visible(True)  # its ticks need their spine (styles hide it)
        ax.right_ax = right  # type: ignore[attr-defined]
    return ax


def plot_contour(
    surface: Surface,
    metric: str = "loss",
    ax: Axes | None = None,
    *,
    levels: int | Sequence[float] | None = None,
    log: bool | None = None,
    filled: bool = False,
    colorbar: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
    mark_center: bool = True,
    inline_labels: bool = False,
    cmap: str = "viridis",
    **kwargs: Any,
) -> Axes:
    """Plot contour lines (or filled contours) of a metric on a 2D surface.

    Levels come from the finite values only. On a linear scale they are round numbers (1, 2,
    2.5 or 5 times a power of ten, about ``levels`` of them, default 20): filled contours start
    strictly below the minimum, so the minimum's region is drawn; lines lie strictly inside the
    value range, so the lowest line encloses the minimum. On a log scale (``log=True``, or
    ``log=None`` when the positive values span more than two decades) there are exactly
    ``levels`` log-spaced levels. The array is transposed for matplotlib, so ``x`` runs along
    the horizontal axis.

    Args:
        surface: a 2D :class:`Surface`.
        metric: name of the metric to draw.
        ax: axes to draw on; the current axes if None.
        levels: number of levels, or the increasing level values themselves.
        log: log-spaced levels and a log colour norm; None decides from the data's span.
        filled: filled contours (``contourf``) instead of lines.
        colorbar: draw a colour bar labelled with the metric.
        vmin, vmax: range covered by the levels (default: the finite data range); a given end
            is an exact level of filled contours.
        mark_center: mark the checkpoint ``(0, 0)`` with a star when it is on the grid.
        inline_labels: write level values on the lines (``clabel``; lines only).
        cmap: colour map.
        **kwargs: passed to ``Axes.contour`` / ``Axes.contourf``.

    Returns:
        The Axes; the contour set is ``ax.collections[0]``.

    Raises:
        ValueError: for a 1D surface, a metric with no finite value, or invalid levels.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> x, y = np.linspace(-1, 1, 5), np.linspace(-1, 1, 4)
        >>> s = Surface(x=x, y=y, metrics={"loss": np.add.outer(x**2, y**2)})
        >>> fig, ax = plt.subplots()
        >>> plot_contour(s, ax=ax, levels=4).collections[0].levels.tolist()
        [0.5, 1.0, 1.5]
        >>> plt.close(fig)
    """
    ax = get_ax(ax)
    (z,), lev, norm, extend = prepare_contours(
        [surface], metric, levels=levels, log=log, vmin=vmin, vmax=vmax, lines=not filled
    )
    x, y = np.asarray(surface.x, dtype=float), np.asarray(surface.y, dtype=float)
    if "colors" not in kwargs:  # fixed line colours (e.g. colors="k") replace the colour map
        kwargs.setdefault("cmap", cmap)
    if filled:
        kwargs.setdefault("extend", extend)
        cs = ax.contourf(x, y, z, levels=lev, norm=norm, **kwargs)
    else:
        cs = ax.contour(x, y, z, levels=lev, norm=norm, **kwargs)
        if inline_labels:
            ax.clabel(cs, inline=True, fontsize="small", fmt="%.3g")
    label_plane(ax, surface, mark_center=mark_center)
    if colorbar:
        add_colorbar(ax.figure, cs, ax, metric)
    return ax


def plot_contourf(
    surface: Surface,
    metric: str = "loss",
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """Plot filled contours of a metric on a 2D surface: ``plot_contour(..., filled=True)``.

    Args:
        surface: a 2D :class:`Surface`.
        metric: name of the metric to draw.
        ax: axes to draw on; the current axes if None.
        **kwargs: the keyword options of :func:`plot_contour` (levels, log, colorbar, ...).

    Returns:
        The Axes; the filled contour set is ``ax.collections[0]``.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> x, y = np.linspace(-1, 1, 5), np.linspace(-1, 1, 4)
        >>> s = Surface(x=x, y=y, metrics={"loss": np.add.outer(x**2, y**2)})
        >>> fig, ax = plt.subplots()
        >>> bool(plot_contourf(s, ax=ax).collections[0].filled)
        True
        >>> plt.close(fig)
    """
    kwargs["filled"] = True
    return plot_contour(surface, metric, ax, **kwargs)
