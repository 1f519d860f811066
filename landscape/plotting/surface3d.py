"""The 3D surface of a metric on a 2D surface, with the checkpoint marked."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, cast

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.ticker import MaxNLocator

from landscape.surface import Surface

from ._common import CENTER_STYLE, axis_labels, finite_values, metric_2d, use_log, value_at_center

if TYPE_CHECKING:
    from mpl_toolkits.mplot3d import Axes3D

__all__ = ["plot_surface3d"]


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
    ax3d = cast("Axes3D", ax)  # checked just above
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
    poly = ax3d.plot_surface(xx, yy, shown.T, **kwargs)
    x_label, y_label = axis_labels(surface)
    ax3d.set_xlabel(x_label)
    ax3d.set_ylabel(y_label)
    z_label = f"log10({metric})" if log_scale else metric
    ax3d.set_zlabel(z_label)
    if mark_center:
        height = value_at_center(surface, shown)
        if np.isfinite(height):
            ax3d.computed_zorder = False  # drawn in zorder: the star (5) over the surface (1)
            ax3d.plot([0.0], [0.0], [height], linestyle="none", label="checkpoint", zorder=5,
                    **CENTER_STYLE)  # fmt: skip
    if colorbar:
        ax3d.figure.colorbar(poly, ax=ax3d, label=z_label, shrink=0.6, pad=0.15)
    ax3d.xaxis.set_major_locator(MaxNLocator(5))
    ax3d.yaxis.set_major_locator(MaxNLocator(5))
    return ax3d
