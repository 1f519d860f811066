"""Figures of loss landscapes: lines, contours, heatmaps, 3D surfaces, spectra, comparisons.

Axes-level functions (``plot_line``, ``plot_contour``, ``plot_contourf``, ``plot_heatmap``,
``plot_surface3d``, ``plot_convexity``, ``plot_spectral_density``, ``plot_eigenvalues``,
``plot_lines_compare``) take ``ax=None`` (the current axes is used then) and return the Axes they
drew on. Figure-level helpers (``plot_contours_compare``, ``plot_measures``) lay out several axes
and return the Figure. A colour bar, when drawn, is reachable as ``mappable.colorbar`` (the first
entry of ``ax.collections``).

Metric arrays of a :class:`~landscape.surface.Surface` are indexed ``[i, j]`` for the point
``(x[i], y[j])``; matplotlib wants rows along y, so every 2D plot draws the transpose. Non-finite
values (inf, NaN) are masked, never drawn, and never used to choose levels or colour limits.

Nothing here changes matplotlib's global settings or calls ``plt.show()``; publication styling is
the context manager :func:`landscape_style`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import matplotlib as mpl
import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from landscape.surface import Surface

__all__ = [
    "landscape_style",
    "plot_contour",
    "plot_contourf",
    "plot_contours_compare",
    "plot_convexity",
    "plot_eigenvalues",
    "plot_heatmap",
    "plot_line",
    "plot_lines_compare",
    "plot_measures",
    "plot_spectral_density",
    "plot_surface3d",
    "save_figure",
]

#: Default number of contour levels when ``levels`` is not given.
DEFAULT_NUM_LEVELS = 20
#: Finite positive values spanning more than this ratio get log-spaced levels by default.
LOG_SPAN = 100.0
#: Marker style of the checkpoint (the centre, ``(0, 0)``) on 2D plots.
CENTER_STYLE = {"marker": "*", "color": "white", "markeredgecolor": "black", "markersize": 10}


# --------------------------------------------------------------------------------------------
# private helpers
# --------------------------------------------------------------------------------------------


def _finite(values: np.ndarray, what: str) -> np.ndarray:
    """The finite entries of ``values``; ValueError naming ``what`` if there are none."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ValueError(
            f"{what} has no finite values (all NaN or inf); nothing to plot. "
            "Compute the surface first, or plot another metric."
        )
    return finite


def _metric_2d(surface: Surface, metric: str) -> np.ndarray:
    """The metric as a float array of shape (nx, ny), checked against the grid."""
    if not isinstance(surface, Surface):
        raise TypeError(f"expected a landscape Surface, got {type(surface).__name__}")
    if not surface.is_2d:
        raise ValueError(
            "this plot needs a 2D surface (x and y); this one is a 1D line, use plot_line"
        )
    z = np.asarray(surface[metric], dtype=float)
    shape = (len(surface.x), len(surface.y))
    if z.shape != shape:
        raise ValueError(f"metric {metric!r} has shape {z.shape}, expected {shape} from x and y")
    if min(shape) < 2:
        raise ValueError(f"a 2D plot needs at least 2 points along each direction, got {shape}")
    return z


def _use_log(finite: np.ndarray, log: bool | None) -> bool:
    """Whether to use a log scale: ``log`` if given, else when positive data span > 2 decades."""
    if log is not None:
        return bool(log)
    lo, hi = float(finite.min()), float(finite.max())
    return lo > 0 and hi / lo > LOG_SPAN


def _plottable(z: np.ndarray, log: bool, what: str) -> tuple[np.ma.MaskedArray, np.ndarray]:
    """Mask the non-finite (and, on a log scale, non-positive) values; return (masked, kept)."""
    keep = np.isfinite(z)
    if log:
        positive = keep & (z > 0)
        if not positive.any():
            raise ValueError(
                f"{what} has no positive finite values for a log scale; pass log=False"
            )
        if (keep & ~positive).any():
            warnings.warn(
                f"{what}: values <= 0 cannot be shown on a log scale and are left blank",
                UserWarning,
                stacklevel=3,
            )
        keep = positive
    return np.ma.masked_array(z, mask=~keep), z[keep]


def _value_range(
    kept: np.ndarray, vmin: float | None, vmax: float | None, log: bool
) -> tuple[float, float]:
    """The range the levels / colours cover: data range, overridden by vmin/vmax, never empty."""
    lo = float(kept.min()) if vmin is None else float(vmin)
    hi = float(kept.max()) if vmax is None else float(vmax)
    if log and lo <= 0:
        raise ValueError(f"vmin must be positive on a log scale, got {lo}")
    if lo > hi:
        raise ValueError(f"vmin ({lo}) is larger than vmax ({hi})")
    if lo == hi:  # constant data: widen so that levels and norms are well defined
        if log:
            lo, hi = lo / 2, hi * 2
        else:
            pad = 0.5 * abs(lo) if lo != 0 else 0.5
            lo, hi = lo - pad, hi + pad
    return lo, hi


def _levels(
    levels: int | Sequence[float] | np.ndarray | None, lo: float, hi: float, log: bool
) -> np.ndarray:
    """Contour levels: ``levels`` if an array, else that many (default 20) linear or log steps."""
    if levels is None or isinstance(levels, (int, np.integer)):
        num = DEFAULT_NUM_LEVELS if levels is None else int(levels)
        if num < 2:
            raise ValueError(f"levels must be at least 2 when given as a count, got {num}")
        return np.geomspace(lo, hi, num) if log else np.linspace(lo, hi, num)
    arr = np.asarray(levels, dtype=float)
    if arr.ndim != 1 or arr.size < 2 or not np.all(np.isfinite(arr)):
        raise ValueError(f"levels must be a count or at least 2 finite numbers, got {levels!r}")
    if np.any(np.diff(arr) <= 0):
        raise ValueError(f"levels must be strictly increasing, got {arr.tolist()}")
    if log and arr[0] <= 0:
        raise ValueError(f"levels must be positive on a log scale, got {arr.tolist()}")
    return arr


def _extend(kept: np.ndarray, lo: float, hi: float) -> Literal["neither", "both", "min", "max"]:
    """Colour-bar extension telling that some data lie outside [lo, hi]."""
    below, above = bool((kept < lo).any()), bool((kept > hi).any())
    return {(False, False): "neither", (True, True): "both", (True, False): "min"}.get(
        (below, above), "max"
    )


def _axis_labels(surface: Surface) -> tuple[str, str]:
    return str(surface.attrs.get("x_label", "x")), str(surface.attrs.get("y_label", "y"))


def _mark_center(ax: Axes, surface: Surface) -> None:
    """Mark the checkpoint (0, 0) if it lies inside the grid."""
    x, y = np.asarray(surface.x), np.asarray(surface.y)
    if x.min() <= 0 <= x.max() and y.min() <= 0 <= y.max():
        ax.plot([0.0], [0.0], linestyle="none", label="checkpoint", zorder=5, **CENTER_STYLE)


def _prepare_2d(
    surfaces: Sequence[Surface],
    metric: str,
    *,
    levels: Any,
    log: bool | None,
    vmin: float | None,
    vmax: float | None,
    lines: bool = False,
) -> tuple[list[np.ma.MaskedArray], np.ndarray, Normalize, str]:
    """Masked transposed arrays, shared levels and norm, and colour-bar extension.

    For contour lines (``lines=True``) a count of levels excludes the two ends of the value
    range, where a "contour" is only a point at the minimum or in a corner.
    """
    raw = [_metric_2d(s, metric) for s in surfaces]
    pooled = np.concatenate([_finite(z, f"metric {metric!r}") for z in raw])
    if log is None and levels is not None and not isinstance(levels, (int, np.integer)):
        use_log = _use_log(pooled, None) and float(np.min(levels)) > 0
    else:
        use_log = _use_log(pooled, log)
    masked, kept = [], []
    for z in raw:
        m, k = _plottable(z, use_log, f"metric {metric!r}")
        masked.append(m.T)  # [i, j] = (x[i], y[j]) -> rows along y for matplotlib
        kept.append(k)
    kept_all = np.concatenate(kept)
    lo, hi = _value_range(kept_all, vmin, vmax, use_log)
    if lines and (levels is None or isinstance(levels, (int, np.integer))):
        num = DEFAULT_NUM_LEVELS if levels is None else int(levels)
        if num < 1:
            raise ValueError(f"levels must be at least 1 for contour lines, got {num}")
        lev = _levels(num + 2, lo, hi, use_log)[1:-1]
    else:
        lev = _levels(levels, lo, hi, use_log)
    lo, hi = min(lo, lev[0]), max(hi, lev[-1])
    norm: Normalize = LogNorm(lo, hi) if use_log else Normalize(lo, hi)
    return masked, lev, norm, _extend(kept_all, lev[0], lev[-1])


def _colorbar(fig: Any, mappable: Any, ax: Any, label: str, **kwargs: Any) -> Any:
    """A colour bar; on a log norm, ticks at 1, 2, 5 times powers of ten in scientific notation."""
    if isinstance(mappable.norm, LogNorm):
        kwargs.setdefault("ticks", mticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        kwargs.setdefault("format", mticker.LogFormatterSciNotation())
    return fig.colorbar(mappable, ax=ax, label=label, **kwargs)


def _get_ax(ax: Axes | None) -> Axes:
    if ax is None:
        return plt.gca()
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
    return ax


def _finite_or_nan(values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    return np.where(np.isfinite(arr), arr, np.nan)


# --------------------------------------------------------------------------------------------
# surfaces
# --------------------------------------------------------------------------------------------


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
        >>> s = Surface(x=np.linspace(-1, 1, 5), y=None,
        ...             metrics={"loss": np.linspace(-1, 1, 5) ** 2 + 0.1})
        >>> fig, ax = plt.subplots()
        >>> plot_line(s, ax=ax).get_xlabel()
        'x'
        >>> plt.close(fig)
    """
    if not isinstance(surface, Surface):
        raise TypeError(f"expected a landscape Surface, got {type(surface).__name__}")
    if surface.is_2d:
        raise ValueError("plot_line needs a 1D surface; use plot_contour or plot_heatmap for 2D")
    names = (metrics,) if isinstance(metrics, str) else tuple(dict.fromkeys(metrics))
    if not 1 <= len(names) <= 2:
        raise ValueError(f"plot_line draws one or two metrics, got {list(names)}")
    ax = _get_ax(ax)
    x = np.asarray(surface.x, dtype=float)
    first = np.asarray(surface[names[0]], dtype=float)
    use_log = _use_log(_finite(first, f"metric {names[0]!r}"), log)
    kwargs.setdefault("color", "C0")
    ax.plot(x, _finite_or_nan(first), label=names[0], **kwargs)
    ax.set_xlabel(_axis_labels(surface)[0])
    ax.set_ylabel(names[0], color=kwargs["color"])
    if use_log:
        ax.set_yscale("log")
    if len(names) == 2 and names[1] in surface.metrics:
        second = np.asarray(surface[names[1]], dtype=float)
        right = ax.twinx()
        right.plot(x, _finite_or_nan(second), color="C1", linestyle="--", label=names[1])
        right.set_ylabel(names[1], color="C1")
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

    Levels come from the finite values only: ``levels`` of them (default 20) evenly spaced, or
    log-spaced when ``log=True`` or (``log=None``) when the positive values span more than two
    decades. The array is transposed for matplotlib, so ``x`` runs along the horizontal axis.

    Args:
        surface: a 2D :class:`Surface`.
        metric: name of the metric to draw.
        ax: axes to draw on; the current axes if None.
        levels: number of levels, or the increasing level values themselves.
        log: log-spaced levels and a log colour norm; None decides from the data's span.
        filled: filled contours (``contourf``) instead of lines.
        colorbar: draw a colour bar labelled with the metric.
        vmin, vmax: range covered by the levels (default: the finite data range).
        mark_center: mark the checkpoint ``(0, 0)`` with a star when it is on the grid.
        inline_labels: write level values on the lines (``clabel``; lines only).
        cmap: colour map.
        **kwargs: passed to ``Axes.contour`` / ``Axes.contourf``.

    Returns:
        The Axes; the contour set is ``ax.collections[0]``.

    Raises:
        ValueError: for a 1D surface, a metric with no finite value, or invalid levels.

    Example:
        >>> x, y = np.linspace(-1, 1, 5), np.linspace(-1, 1, 4)
        >>> s = Surface(x=x, y=y, metrics={"loss": np.add.outer(x**2, y**2)})
        >>> fig, ax = plt.subplots()
        >>> len(plot_contour(s, ax=ax, levels=5).collections[0].levels)
        5
        >>> plt.close(fig)
    """
    ax = _get_ax(ax)
    (z,), lev, norm, extend = _prepare_2d(
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
    x_label, y_label = _axis_labels(surface)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    if mark_center:
        _mark_center(ax, surface)
    if colorbar:
        _colorbar(ax.figure, cs, ax, metric)
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
        >>> x, y = np.linspace(-1, 1, 5), np.linspace(-1, 1, 4)
        >>> s = Surface(x=x, y=y, metrics={"loss": np.add.outer(x**2, y**2)})
        >>> fig, ax = plt.subplots()
        >>> bool(plot_contourf(s, ax=ax).collections[0].filled)
        True
        >>> plt.close(fig)
    """
    kwargs["filled"] = True
    return plot_contour(surface, metric, ax, **kwargs)


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
        >>> x, y = np.linspace(-1, 1, 5), np.linspace(-1, 1, 4)
        >>> s = Surface(x=x, y=y, metrics={"loss": np.add.outer(x**2, y**2)})
        >>> fig, ax = plt.subplots()
        >>> plot_heatmap(s, ax=ax).collections[0].get_array().shape
        (4, 5)
        >>> plt.close(fig)
    """
    ax = _get_ax(ax)
    (z,), _, norm, extend = _prepare_2d([surface], metric, levels=2, log=log, vmin=vmin, vmax=vmax)
    x, y = np.asarray(surface.x, dtype=float), np.asarray(surface.y, dtype=float)
    kwargs.setdefault("cmap", cmap)
    kwargs.setdefault("shading", "nearest")
    mesh = ax.pcolormesh(x, y, z, norm=norm, **kwargs)
    x_label, y_label = _axis_labels(surface)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    if mark_center:
        _mark_center(ax, surface)
    if colorbar:
        _colorbar(ax.figure, mesh, ax, metric, extend=extend)
    return ax


def plot_surface3d(
    surface: Surface,
    metric: str = "loss",
    ax: Axes | None = None,
    *,
    log: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool = True,
    cmap: str = "viridis",
    **kwargs: Any,
) -> Axes:
    """Plot a metric on a 2D surface as a 3D surface.

    Values outside ``[vmin, vmax]`` and non-finite values are not drawn (a loss exploding at the
    border of the grid would otherwise flatten the picture).

    Args:
        surface: a 2D :class:`Surface`.
        metric: name of the metric to draw.
        ax: a 3D axes (``projection="3d"``); a new figure with one is made if None.
        log: draw ``log10`` of the metric (3D axes have no reliable log scale).
        vmin, vmax: range of values drawn, in the metric's units.
        colorbar: draw a colour bar.
        cmap: colour map.
        **kwargs: passed to ``Axes3D.plot_surface``.

    Returns:
        The 3D Axes; the surface is ``ax.collections[0]``.

    Raises:
        TypeError: if ``ax`` is not a 3D axes.
        ValueError: for a 1D surface or a metric with no finite value in range.

    Example:
        >>> x, y = np.linspace(-1, 1, 5), np.linspace(-1, 1, 4)
        >>> s = Surface(x=x, y=y, metrics={"loss": np.add.outer(x**2, y**2)})
        >>> ax = plot_surface3d(s)
        >>> ax.name
        '3d'
        >>> plt.close(ax.figure)
    """
    if ax is None:
        ax = plt.figure().add_subplot(projection="3d")
    elif getattr(ax, "name", None) != "3d":
        raise TypeError(
            f"plot_surface3d needs a 3D axes, got {type(ax).__name__}; "
            "make one with fig.add_subplot(projection='3d') or pass ax=None"
        )
    z = _metric_2d(surface, metric)
    keep = np.isfinite(z)
    if vmin is not None:
        keep &= z >= vmin
    if vmax is not None:
        keep &= z <= vmax
    if log:
        keep &= z > 0
    if not keep.any():
        raise ValueError(f"metric {metric!r} has no finite value to draw in the requested range")
    with np.errstate(divide="ignore", invalid="ignore"):
        shown = np.where(keep, np.log10(z) if log else z, np.nan)
    xx, yy = np.meshgrid(np.asarray(surface.x, float), np.asarray(surface.y, float))
    kwargs.setdefault("cmap", cmap)
    lo, hi = float(np.nanmin(shown)), float(np.nanmax(shown))
    kwargs.setdefault("norm", Normalize(lo, hi if hi > lo else lo + 1))
    poly = ax.plot_surface(xx, yy, shown.T, **kwargs)
    x_label, y_label = _axis_labels(surface)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    z_label = f"log10({metric})" if log else metric
    ax.set_zlabel(z_label)
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
    largest), values near or above 1 mean strongly non-convex. The colour scale is 0..``vmax``
    (values above are shown in the top colour and the bar gets an arrow), or log-scaled.
    A 1D surface gives a line.

    Args:
        surface: a :class:`Surface` holding ``metric`` (default ``"convexity"``).
        ax: axes to draw on; the current axes if None.
        metric: name of the convexity metric.
        log: log colour scale (log y axis for a line), from the smallest positive value to vmax.
        vmax: top of the colour scale.
        colorbar: draw a colour bar (2D only).
        cmap: colour map.
        **kwargs: passed to ``Axes.pcolormesh`` (2D) or ``Axes.plot`` (1D).

    Returns:
        The Axes.

    Raises:
        ValueError: if the metric has no finite value.

    Example:
        >>> x, y = np.linspace(-1, 1, 5), np.linspace(-1, 1, 4)
        >>> s = Surface(x=x, y=y, metrics={"convexity": np.abs(np.add.outer(x, y)) / 2})
        >>> fig, ax = plt.subplots()
        >>> float(plot_convexity(s, ax=ax).collections[0].norm.vmax)
        1.0
        >>> plt.close(fig)
    """
    if not isinstance(surface, Surface):
        raise TypeError(f"expected a landscape Surface, got {type(surface).__name__}")
    if not surface.is_2d:
        ax = _get_ax(ax)
        values = np.asarray(surface[metric], dtype=float)
        _finite(values, f"metric {metric!r}")
        ax.plot(np.asarray(surface.x, float), _finite_or_nan(values), **kwargs)
        ax.set_xlabel(_axis_labels(surface)[0])
        ax.set_ylabel(r"$|\lambda_{min} / \lambda_{max}|$")
        if log:
            ax.set_yscale("log")
        return ax
    z = _metric_2d(surface, metric)
    finite = _finite(z, f"metric {metric!r}")
    vmin = None
    if log:
        positive = finite[finite > 0]
        vmin = float(positive.min()) if positive.size else None
        vmin = min(vmin, vmax / 10) if vmin is not None else None
    else:
        vmin = 0.0
    return plot_heatmap(
        surface,
        metric,
        ax,
        log=log,
        vmin=vmin,
        vmax=vmax,
        colorbar=colorbar,
        cmap=cmap,
        **kwargs,
    )


# --------------------------------------------------------------------------------------------
# Hessian spectra
# --------------------------------------------------------------------------------------------


def plot_spectral_density(
    grid: Any,
    density: Any,
    ax: Axes | None = None,
    *,
    floor: float | None = None,
    label: str | None = None,
    **kwargs: Any,
) -> Axes:
    """Plot an eigenvalue spectral density on a log y axis.

    Args:
        grid: eigenvalue positions, shape ``(n,)``.
        density: density at those positions, shape ``(n,)``.
        ax: axes to draw on; the current axes if None.
        floor: values below it (zeros, tiny negatives of the quadrature) are raised to it so that
            the log axis works; default ``1e-8`` times the largest finite density.
        label: legend label of the curve.
        **kwargs: passed to ``Axes.plot``.

    Returns:
        The Axes.

    Raises:
        ValueError: if shapes differ or the density has no finite positive value.

    Example:
        >>> g = np.linspace(-1, 5, 50)
        >>> fig, ax = plt.subplots()
        >>> plot_spectral_density(g, np.exp(-(g**2)), ax=ax).get_yscale()
        'log'
        >>> plt.close(fig)
    """
    ax = _get_ax(ax)
    grid = np.asarray(grid, dtype=float)
    density = np.asarray(density, dtype=float)
    if grid.ndim != 1 or grid.shape != density.shape:
        raise ValueError(
            f"grid and density must be 1D of the same length, got {grid.shape} and {density.shape}"
        )
    finite = _finite(density, "density")
    top = float(finite.max())
    if floor is None:
        if top <= 0:
            raise ValueError("density has no positive value; nothing to show on a log axis")
        floor = 1e-8 * top
    if floor <= 0:
        raise ValueError(f"floor must be positive for a log axis, got {floor}")
    shown = np.where(np.isfinite(density), np.maximum(density, floor), np.nan)
    ax.plot(grid, shown, label=label, **kwargs)
    ax.set_yscale("log")
    ax.set_ylim(bottom=floor)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    return ax


def plot_eigenvalues(
    eigenvalues: Any,
    ax: Axes | None = None,
    *,
    errors: Any = None,
    log: bool = False,
    **kwargs: Any,
) -> Axes:
    """Plot Hessian eigenvalues as a bar chart, largest first as given, indexed from 1.

    Args:
        eigenvalues: the values, shape ``(k,)``.
        ax: axes to draw on; the current axes if None.
        errors: optional error bars, shape ``(k,)`` (NaN for none).
        log: symmetric-log y axis (log if all are positive), for spectra spanning decades.
        **kwargs: passed to ``Axes.bar``.

    Returns:
        The Axes; the bars are ``ax.patches``.

    Raises:
        ValueError: if ``errors`` does not match ``eigenvalues`` or there is no finite value.

    Example:
        >>> fig, ax = plt.subplots()
        >>> len(plot_eigenvalues([5.0, 2.0, 0.5], ax=ax).patches)
        3
        >>> plt.close(fig)
    """
    ax = _get_ax(ax)
    values = np.asarray(eigenvalues, dtype=float).reshape(-1)
    finite = _finite(values, "eigenvalues")
    yerr = None
    if errors is not None:
        yerr = np.asarray(errors, dtype=float).reshape(-1)
        if yerr.shape != values.shape:
            raise ValueError(f"errors has shape {yerr.shape}, expected {values.shape}")
        yerr = _finite_or_nan(yerr)
    index = np.arange(1, values.size + 1)
    kwargs.setdefault("color", "C0")
    ax.bar(index, _finite_or_nan(values), yerr=yerr, capsize=3, **kwargs)
    ax.set_xticks(index)
    ax.set_xlabel("eigenvalue index")
    ax.set_ylabel("eigenvalue")
    if log:
        if finite.min() > 0:
            ax.set_yscale("log")
        else:
            ax.set_yscale("symlog", linthresh=max(float(np.abs(finite).min()), 1e-12))
    return ax


# --------------------------------------------------------------------------------------------
# comparisons of checkpoints
# --------------------------------------------------------------------------------------------


def plot_lines_compare(
    curves: Mapping[str, Sequence[Any]],
    ax: Axes | None = None,
    *,
    log: bool | None = None,
    x_label: str = "x",
    y_label: str = "loss",
    alpha: float = 0.25,
) -> Axes:
    """Overlay 1D curves of several checkpoints, each with a shaded band ``mean +- spread``.

    Args:
        curves: ``{label: (x, mean, spread)}`` (``spread`` may be omitted or None, e.g. with one
            direction seed); the spread is typically the standard deviation across seeds.
        ax: axes to draw on; the current axes if None.
        log: log y axis; None chooses it when the finite positive means span > 2 decades.
        x_label, y_label: axis labels.
        alpha: opacity of the bands.

    Returns:
        The Axes, with a legend; one line per curve in ``ax.lines`` and one band per curve with a
        spread in ``ax.collections``, in the order of ``curves``.

    Raises:
        ValueError: if ``curves`` is empty, shapes differ, or no mean has a finite value.

    Example:
        >>> x = np.linspace(-1, 1, 11)
        >>> fig, ax = plt.subplots()
        >>> curves = {"a": (x, x**2, 0.1 + 0 * x), "b": (x, 2 * x**2, None)}
        >>> ax = plot_lines_compare(curves, ax=ax)
        >>> len(ax.lines), len(ax.collections)
        (2, 1)
        >>> plt.close(fig)
    """
    if not curves:
        raise ValueError("curves is empty; give {label: (x, mean, spread)}")
    ax = _get_ax(ax)
    means = []
    for label, curve in curves.items():
        if len(curve) not in (2, 3):
            raise ValueError(f"curve {label!r} must be (x, mean) or (x, mean, spread)")
        x = np.asarray(curve[0], dtype=float)
        mean = np.asarray(curve[1], dtype=float)
        spread = None if len(curve) == 2 or curve[2] is None else np.asarray(curve[2], float)
        if x.ndim != 1 or mean.shape != x.shape or (spread is not None and spread.shape != x.shape):
            raise ValueError(f"curve {label!r}: x, mean and spread must be 1D of the same length")
        means.append(mean[np.isfinite(mean)])
        (line,) = ax.plot(x, _finite_or_nan(mean), label=str(label))
        if spread is not None:
            mean_f, spread_f = _finite_or_nan(mean), _finite_or_nan(spread)
            ax.fill_between(
                x,
                mean_f - spread_f,
                mean_f + spread_f,
                color=line.get_color(),
                alpha=alpha,
                linewidth=0,
            )
    if _use_log(_finite(np.concatenate(means), "the means of curves"), log):
        ax.set_yscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.legend()
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

    Levels and colour norm are computed once from the finite values of all surfaces together,
    so a colour means the same value in every panel; one colour bar serves all panels.

    Args:
        surfaces: ``{label: Surface}``; each label becomes a panel title.
        metric: name of the metric to draw.
        axes: one axes per surface to draw on; otherwise new axes are laid out in ``fig`` (or a new
            figure), ``ncols`` per row (default: all in one row).
        fig: figure to lay the panels out in, when ``axes`` is None.
        levels, log, filled, vmin, vmax, mark_center, cmap: as in :func:`plot_contour`.
        colorbar: draw the shared colour bar.
        ncols: panels per row.
        **kwargs: passed to ``Axes.contour`` / ``Axes.contourf``.

    Returns:
        The Figure. Each panel's contour set has the same ``levels`` and ``norm``.

    Raises:
        ValueError: if ``surfaces`` is empty, ``axes`` has the wrong length, or no finite value.

    Example:
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
    masked, lev, norm, extend = _prepare_2d(
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
        x_label, y_label = _axis_labels(surface)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.set_title(str(label))
        if mark_center:
            _mark_center(ax, surface)
    if colorbar and last is not None:
        _colorbar(fig, last, panel_axes, metric)
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
) -> Figure:
    """Plot sharpness measures of several checkpoints: one small panel per measure, with error bars.

    Each measure has its own scale, so each gets its own axes (a figure-level helper, like
    seaborn's); within a panel there is one bar per checkpoint, with ``+- stderr``.

    Args:
        table: ``{checkpoint_label: {measure: (value, stderr)}}``; an entry may also be a plain
            number (no error bar) or an object with ``value`` and ``stderr`` attributes. A missing
            or non-finite value leaves no bar.
        measures: which measures, in order; default: all, in order of first appearance.
        fig: figure to draw in; a new one if None.
        ncols: panels per row (default: up to 4).

    Returns:
        The Figure; ``fig.axes[k]`` is the panel of ``measures[k]``, titled with its name.

    Raises:
        ValueError: if ``table`` is empty or a requested measure is in no checkpoint.

    Example:
        >>> fig = plot_measures({"sgd": {"trace": (10.0, 1.0)}, "adam": {"trace": (30.0, 2.0)}})
        >>> [ax.get_title() for ax in fig.axes]
        ['trace']
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
    checkpoints = list(table)
    cols = min(len(measures), 4) if ncols is None else max(1, min(int(ncols), len(measures)))
    rows = -(-len(measures) // cols)
    if fig is None:
        fig = plt.figure(figsize=(max(2.6 * cols, 3.0), 2.6 * rows), layout="constrained")
    grid = fig.subplots(rows, cols, squeeze=False)
    panel_axes = list(grid.ravel())
    for extra in panel_axes[len(measures) :]:
        extra.remove()
    index = np.arange(len(checkpoints))
    colors = [f"C{k % 10}" for k in range(len(checkpoints))]
    for ax, measure in zip(panel_axes, measures, strict=False):
        pairs = [
            _value_stderr(table[c][measure]) if measure in table[c] else (np.nan, np.nan)
            for c in checkpoints
        ]
        values = _finite_or_nan([p[0] for p in pairs])
        errs = _finite_or_nan([p[1] for p in pairs])
        ax.bar(index, values, yerr=errs, color=colors, capsize=3)
        ax.set_xticks(index, [str(c) for c in checkpoints], rotation=30, ha="right")
        ax.set_title(measure)
    return fig


# --------------------------------------------------------------------------------------------
# style and saving
# --------------------------------------------------------------------------------------------

_CONTEXT_FONT = {"paper": 8.0, "notebook": 10.0, "talk": 13.0, "poster": 16.0}
_CONTEXT_SIZE = {
    "paper": (3.4, 2.6),  # one column of a two-column paper
    "notebook": (6.0, 4.5),
    "talk": (8.0, 6.0),
    "poster": (10.0, 7.5),
}


@contextmanager
def landscape_style(
    context: Literal["paper", "notebook", "talk", "poster"] = "paper",
    *,
    font_scale: float = 1.0,
    rc: Mapping[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Temporarily style matplotlib for publication figures; the settings are restored on exit.

    Fonts are embedded as TrueType in PDF/PS (``fonttype 42``) and kept as text in SVG, so figures
    stay editable; sizes follow ``context``; saved figures are cropped tight at 300 dpi.

    Args:
        context: ``"paper"`` (8 pt, one-column width), ``"notebook"``, ``"talk"`` or ``"poster"``.
        font_scale: multiplies every font size.
        rc: extra rcParams, applied last.

    Yields:
        The rcParams in effect inside the block.

    Raises:
        ValueError: for an unknown context or a non-positive font_scale.

    Example:
        >>> with landscape_style("talk"):
        ...     fig, ax = plt.subplots()
        >>> plt.close(fig)
    """
    if context not in _CONTEXT_FONT:
        raise ValueError(f"context must be one of {sorted(_CONTEXT_FONT)}, got {context!r}")
    if not font_scale > 0:
        raise ValueError(f"font_scale must be positive, got {font_scale}")
    base = _CONTEXT_FONT[context] * font_scale
    params: dict[str, Any] = {
        "pdf.fonttype": 42,
        "ps.fonttype": 42,
        "svg.fonttype": "none",
        "font.size": base,
        "axes.titlesize": base * 1.1,
        "axes.labelsize": base,
        "xtick.labelsize": base * 0.9,
        "ytick.labelsize": base * 0.9,
        "legend.fontsize": base * 0.9,
        "figure.figsize": _CONTEXT_SIZE[context],
        "figure.dpi": 100,
        "figure.constrained_layout.use": True,
        "savefig.dpi": 300,
        "savefig.bbox": "tight",
        "axes.spines.top": False,
        "axes.spines.right": False,
        "lines.linewidth": 1.0 if context == "paper" else 1.5,
        "image.cmap": "viridis",
    }
    params.update(rc or {})
    with mpl.rc_context(params):
        yield dict(params)


def save_figure(fig: Figure, path: str | Path, **kwargs: Any) -> Path:
    """Save a figure, making the parent folder; the format comes from the suffix (pdf, png, svg).

    Args:
        fig: the figure.
        path: where to write it.
        **kwargs: passed to ``Figure.savefig`` (default ``bbox_inches="tight"``).

    Returns:
        The path written.

    Example:
        >>> import tempfile, os
        >>> fig = plt.figure()
        >>> save_figure(fig, os.path.join(tempfile.mkdtemp(), "f.png")).suffix
        '.png'
        >>> plt.close(fig)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs.setdefault("bbox_inches", "tight")
    fig.savefig(path, **kwargs)
    return path
