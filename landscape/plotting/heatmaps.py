"""Heatmaps of one 2D surface: any metric, and the Hessian's convexity map.

One cell is centred on each grid point; the colour scale is chosen as for the contours of
:mod:`~landscape.plotting.surfaces` (non-finite values masked, ``log=None`` decides from the
span of the finite positive values).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes

from landscape.surface import Surface

from ._common import (
    add_colorbar,
    axis_labels,
    check_surface,
    extend_of,
    finite_or_nan,
    finite_values,
    get_ax,
    label_plane,
    make_norm,
    metric_2d,
    prepare_2d,
)

__all__ = ["CONVEXITY_LABEL", "plot_convexity", "plot_heatmap"]

#: What the convexity map shows, on its colour bar (or its y axis for a line).
CONVEXITY_LABEL = r"$|\lambda_{\min} / \lambda_{\max}|$ (higher = less convex)"


def _heatmap(
    surface: Surface,
    metric: str,
    ax: Axes | None,
    colorbar_label: str | None,
    *,
    log: bool | None,
    vmin: float | None,
    vmax: float | None,
    mark_center: bool = True,
    **kwargs: Any,
) -> Axes:
    """The heatmap of both public functions; a colour bar with ``colorbar_label`` unless it
    is None; ``kwargs`` go to ``Axes.pcolormesh``."""
    ax = get_ax(ax)
    (z,), kept, log_scale, lo, hi = prepare_2d([surface], metric, log=log, vmin=vmin, vmax=vmax)
    x, y = np.asarray(surface.x, dtype=float), np.asarray(surface.y, dtype=float)
    kwargs.setdefault("shading", "nearest")
    mesh = ax.pcolormesh(x, y, z, norm=make_norm(lo, hi, log_scale), **kwargs)
    label_plane(ax, surface, mark_center=mark_center)
    if colorbar_label is not None:
        add_colorbar(ax.figure, mesh, ax, colorbar_label, extend=extend_of(kept, lo, hi))
    return ax


def plot_heatmap(
    surface: Surface,
    metric: str = "loss",
    ax: Axes | None = None,
    *,
    log: bool | None = None,
    colorbar: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
    mark_center: bool = True,
    cmap: str = "viridis",
    **kwargs: Any,
) -> Axes:
    """Plot a metric on a 2D surface as a heatmap with one cell centred on each grid point.

    Args:
        surface: a 2D :class:`Surface`.
        metric: name of the metric to draw.
        ax: axes to draw on; the current axes if None.
        log: log colour norm; None decides from the data's span (more than two decades).
        colorbar: draw a colour bar labelled with the metric.
        vmin, vmax: colour limits (default: the finite data range).
        mark_center: mark the checkpoint ``(0, 0)`` when it is on the grid.
        cmap: colour map.
        **kwargs: passed to ``Axes.pcolormesh``.

    Returns:
        The Axes; the mesh is ``ax.collections[0]`` (its array has shape ``(ny, nx)``).

    Raises:
        ValueError: for a 1D surface or a metric with no finite value.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> x, y = np.linspace(-1, 1, 5), np.linspace(-1, 1, 4)
        >>> s = Surface(x=x, y=y, metrics={"loss": np.add.outer(x**2, y**2)})
        >>> fig, ax = plt.subplots()
        >>> plot_heatmap(s, ax=ax).collections[0].get_array().shape
        (4, 5)
        >>> plt.close(fig)
    """
    label = metric if colorbar else None
    return _heatmap(
        surface, metric, ax, label, log=log, vmin=vmin, vmax=vmax, mark_center=mark_center,
        cmap=cmap, **kwargs
    )  # fmt: skip


def plot_convexity(
    surface: Surface,
    ax: Axes | None = None,
    *,
    metric: str = "convexity",
    log: bool = False,
    vmax: float = 1.0,
    colorbar: bool = True,
    cmap: str = "viridis",
    **kwargs: Any,
) -> Axes:
    """Plot the convexity map ``|lambda_min / lambda_max|`` of the Hessian (Li et al. 2018).

    Values near 0 mean locally convex (the most negative curvature is small next to the
    largest), higher values less convex, near or above 1 strongly non-convex; the colour bar
    (the y axis for a line) says so. The colour scale is 0..``vmax`` (values above are shown in
    the top colour and the bar gets an arrow), or log-scaled. A 1D surface gives a line.

    Args:
        surface: a :class:`Surface` holding ``metric`` (default ``"convexity"``).
        ax: axes to draw on; the current axes if None.
        metric: name of the convexity metric.
        log: log colour scale (log y axis for a line), from the smallest positive value to vmax.
        vmax: top of the colour scale.
        colorbar: draw a colour bar (2D only), labelled :data:`CONVEXITY_LABEL`.
        cmap: colour map.
        **kwargs: passed to ``Axes.pcolormesh`` (2D) or ``Axes.plot`` (1D).

    Returns:
        The Axes.

    Raises:
        ValueError: if the metric has no finite value.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> x, y = np.linspace(-1, 1, 5), np.linspace(-1, 1, 4)
        >>> s = Surface(x=x, y=y, metrics={"convexity": np.abs(np.add.outer(x, y)) / 2})
        >>> fig, ax = plt.subplots()
        >>> float(plot_convexity(s, ax=ax).collections[0].norm.vmax)
        1.0
        >>> plt.close(fig)
    """
    check_surface(surface)
    if not surface.is_2d:
        ax = get_ax(ax)
        values = np.asarray(surface[metric], dtype=float)
        finite_values(values, f"metric {metric!r}")
        ax.plot(np.asarray(surface.x, float), finite_or_nan(values), **kwargs)
        ax.set_xlabel(axis_labels(surface)[0])
        ax.set_ylabel(CONVEXITY_LABEL)
        if log:
            ax.set_yscale("log")
        return ax
    finite = finite_values(metric_2d(surface, metric), f"metric {metric!r}")
    vmin: float | None = 0.0
    if log:
        positive = finite[finite > 0]
        vmin = min(float(positive.min()), vmax / 10) if positive.size else None
    label = CONVEXITY_LABEL if colorbar else None
    return _heatmap(surface, metric, ax, label, log=log, vmin=vmin, vmax=vmax, cmap=cmap, **kwargs)
