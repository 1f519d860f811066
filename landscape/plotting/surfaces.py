"""Figures of one surface: a line, contours, a heatmap, a 3D surface, a convexity map.

Every 2D plot draws the transpose of the ``[i, j]`` metric arrays (matplotlib wants rows along
y), masks non-finite values, and chooses a log scale the same way (``log=None``: when the finite
positive values span more than two decades), so the figures of one surface agree.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.ticker import MaxNLocator

from landscape.surface import Surface

from ._common import (
    CENTER_STYLE,
    add_colorbar,
    axis_labels,
    check_surface,
    draw_center_marker,
    extend_of,
    finite_or_nan,
    finite_values,
    get_ax,
    make_norm,
    metric_2d,
    prepare_2d,
    prepare_contours,
    use_log,
    value_at_center,
)

__all__ = [
    "CONVEXITY_LABEL",
    "plot_contour",
    "plot_contourf",
    "plot_convexity",
    "plot_heatmap",
    "plot_line",
    "plot_surface3d",
]

#: What the convexity map shows, on its colour bar (or its y axis for a line).
CONVEXITY_LABEL = r"$|\lambda_{\min} / \lambda_{\max}|$ (higher = less convex)"


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
    x_label, y_label = axis_labels(surface)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    if mark_center:
        draw_center_marker(ax, surface)
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


def _heatmap(
    surface: Surface,
    metric: str,
    ax: Axes | None,
    *,
    log: bool | None,
    colorbar: bool,
    colorbar_label: str,
    vmin: float | None,
    vmax: float | None,
    mark_center: bool,
    cmap: str,
    **kwargs: Any,
) -> Axes:
    ax = get_ax(ax)
    (z,), kept, log_scale, lo, hi = prepare_2d([surface], metric, log=log, vmin=vmin, vmax=vmax)
    x, y = np.asarray(surface.x, dtype=float), np.asarray(surface.y, dtype=float)
    kwargs.setdefault("cmap", cmap)
    kwargs.setdefault("shading", "nearest")
    mesh = ax.pcolormesh(x, y, z, norm=make_norm(lo, hi, log_scale), **kwargs)
    x_label, y_label = axis_labels(surface)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    if mark_center:
        draw_center_marker(ax, surface)
    if colorbar:
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
    return _heatmap(
        surface,
        metric,
        ax,
        log=log,
        colorbar=colorbar,
        colorbar_label=metric,
        vmin=vmin,
        vmax=vmax,
        mark_center=mark_center,
        cmap=cmap,
        **kwargs,
    )


def plot_surface3d(
    surface: Surface,
    metric: str = "loss",
    ax: Axes | None = None,
    *,
    log: bool | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool = True,
    mark_center: bool = True,
    cmap: str = "viridis",
    **kwargs: Any,
) -> Axes:
    """Plot a metric on a 2D surface as a 3D surface, with the checkpoint marked.

    The scale is chosen as for :func:`plot_contour`: ``log=None`` draws ``log10`` of the metric
    (height and colour) when its finite positive values span more than two decades, so the 3D
    figure and the contours of one surface agree. Values outside ``[vmin, vmax]`` and
    non-finite values are not drawn (a loss exploding at the border of the grid would otherwise
    flatten the picture). The checkpoint ``(0, 0)`` gets a star at its height; the axes then
    draws its artists in ``zorder`` (``computed_zorder = False``) so that the star stays visible
    in front of the surface.

    Args:
        surface: a 2D :class:`Surface`.
        metric: name of the metric to draw.
        ax: a 3D axes (``projection="3d"``); a new figure with one is made if None.
        log: draw ``log10`` of the metric (3D axes have no reliable log scale); None decides
            from the data's span.
        vmin, vmax: range of values drawn, in the metric's units.
        colorbar: draw a colour bar.
        mark_center: mark the checkpoint ``(0, 0)`` when it is on the grid.
        cmap: colour map.
        **kwargs: passed to ``Axes3D.plot_surface``.

    Returns:
        The 3D Axes; the surface is ``ax.collections[0]``, the checkpoint marker ``ax.lines[0]``.

    Raises:
        TypeError: if ``ax`` is not a 3D axes.
        ValueError: for a 1D surface or a metric with no finite value in range.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> x, y = np.linspace(-1, 1, 5), np.linspace(-1, 1, 4)
        >>> s = Surface(x=x, y=y, metrics={"loss": np.add.outer(x**2, y**2)})
        >>> ax = plot_surface3d(s)
        >>> ax.name, ax.get_zlabel()
        ('3d', 'loss')
        >>> plt.close(ax.figure)
    """
    if ax is None:
        ax = plt.figure().add_subplot(projection="3d")
    elif getattr(ax, "name", None) != "3d":
        raise TypeError(
            f"plot_surface3d needs a 3D axes, got {type(ax).__name__}; "
            "make one with fig.add_subplot(projection='3d') or pass ax=None"
        )
    z = metric_2d(surface, metric)
    log_scale = use_log(finite_values(z, f"metric {metric!r}"), log)  # as plot_contour decides
    keep = np.isfinite(z)
    if vmin is not None:
        keep &= z >= vmin
    if vmax is not None:
        keep &= z <= vmax
    if not keep.any():
        raise ValueError(f"metric {metric!r} has no finite value to draw in the requested range")
    if log_scale:
        if not (keep & (z > 0)).any():
            raise ValueError(
                f"metric {metric!r} has no positive finite values for a log scale; pass log=False"
            )
        if (keep & (z <= 0)).any():
            warnings.warn(
                f"metric {metric!r}: values <= 0 cannot be shown on a log scale and are left out",
                UserWarning,
                stacklevel=2,
            )
        keep &= z > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        shown = np.where(keep, np.log10(z) if log_scale else z, np.nan)
    xx, yy = np.meshgrid(np.asarray(surface.x, float), np.asarray(surface.y, float))
    kwargs.setdefault("cmap", cmap)
    lo, hi = float(np.nanmin(shown)), float(np.nanmax(shown))
    kwargs.setdefault("norm", Normalize(lo, hi if hi > lo else lo + 1))
    poly = ax.plot_surface(xx, yy, shown.T, **kwargs)
    x_label, y_label = axis_labels(surface)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    z_label = f"log10({metric})" if log_scale else metric
    ax.set_zlabel(z_label)
    if mark_center:
        height = value_at_center(surface, shown)
        if np.isfinite(height):
            ax.computed_zorder = False  # drawn in zorder: the star (5) over the surface (1)
            ax.plot([0.0], [0.0], [height], linestyle="none", label="checkpoint", zorder=5,
                    **CENTER_STYLE)  # fmt: skip
    if colorbar:
        ax.figure.colorbar(poly, ax=ax, label=z_label, shrink=0.6, pad=0.15)
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.yaxis.set_major_locator(MaxNLocator(5))
    return ax


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
    return _heatmap(
        surface,
        metric,
        ax,
        log=log,
        colorbar=colorbar,
        colorbar_label=CONVEXITY_LABEL,
        vmin=vmin,
        vmax=vmax,
        mark_center=kwargs.pop("mark_center", True),
        cmap=cmap,
        **kwargs,
    )
