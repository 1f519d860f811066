"""Figures of paths between minima and of training trajectories.

Axes-level, like the rest of :mod:`landscape.plotting`: each takes ``ax=None`` (the current
axes then) and returns the Axes it drew on; nothing changes matplotlib's global settings.

- :func:`plot_paths`: a metric along the straight line and the fitted curves, barrier marked;
  after an alignment, the line before it (dashed) beside the lines after it;
- :func:`plot_barrier_matrix`: the pairwise barriers of a set of checkpoints, a heat map;
- :func:`plot_path_plane`: the curves in the plane of (a, b, bend), over a surface of it;
- :func:`plot_trajectory`: a run on its PCA plane, each point labelled by its step, the
  axes labelled with their explained variance;
- :func:`plot_projection_error`: each checkpoint's own loss beside the loss at its
  projected point (what the projection hides).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from ..surface import Surface
from ._common import get_ax
from .surfaces import plot_contour

__all__ = [
    "plot_barrier_matrix",
    "plot_path_plane",
    "plot_paths",
    "plot_projection_error",
    "plot_trajectory",
]


def _as_mapping(paths: Any) -> dict[str, Any]:
    if isinstance(paths, Mapping):
        return dict(paths)
    if hasattr(paths, "paths"):  # a Connection
        return dict(paths.paths)
    if hasattr(paths, "kind"):  # one PathResult
        return {paths.kind: paths}
    return {p.kind: p for p in paths}


def _path_label(kind: str, result: Any) -> str:
    """``kind``, or which side of an alignment the path is on."""
    if kind == "unaligned":
        return "line before alignment"
    return kind if result.settings.get("align") is None else f"{kind} after alignment"


def plot_paths(
    paths: Any,
    metric: str = "loss",
    ax: Axes | None = None,
    *,
    mark_barrier: bool = True,
    **kwargs: Any,
) -> Axes:
    """A metric against ``t`` along each path, the barrier's location marked on the loss.

    Args:
        paths: ``{kind: PathResult}``, a list of them, or a Connection.
        metric: the metric drawn (``loss``, ``accuracy``, ...).
        ax: axes to draw on.
        mark_barrier: for the loss, mark each path's barrier point and write its height
            in the legend.
        **kwargs: passed to ``Axes.plot``.

    Returns:
        The Axes; one line per path, labelled by kind, in order. After
        :func:`~landscape.paths.connect_checkpoints` with ``align=``, the paths joining the
        aligned end are labelled ``"<kind> after alignment"`` and the line between the
        checkpoints as given (kind ``"unaligned"``) ``"line before alignment"``, dashed:
        the barrier before and after alignment on one figure.

    Raises:
        ValueError: no paths, or a path without the metric.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> from landscape.paths import PathResult
        >>> t = np.linspace(0, 1, 5)
        >>> line = PathResult("line", t, {"loss": 1 + 4 * t * (1 - t)}, 1.0, 0.5)
        >>> fig, ax = plt.subplots()
        >>> plot_paths({"line": line}, ax=ax).lines[0].get_label()
        'line (barrier 1)'
        >>> plt.close(fig)
    """
    ax = get_ax(ax)
    paths = _as_mapping(paths)
    if not paths:
        raise ValueError("expected at least one path, got none")
    for kind, result in paths.items():
        if metric not in result.metrics:
            raise ValueError(f"path {kind!r} has no {metric!r}; it has {sorted(result.metrics)}")
        label = _path_label(kind, result)
        if metric == "loss" and mark_barrier:
            label = f"{label} (barrier {result.barrier:.3g})"
        style = {"linestyle": "--"} if kind == "unaligned" else {}
        (drawn,) = ax.plot(result.t, result.metrics[metric], label=label, **{**style, **kwargs})
        if metric == "loss" and mark_barrier and np.isfinite(result.barrier_t):
            i = int(np.argmin(np.abs(result.t - result.barrier_t)))
            ax.plot([result.t[i]], [result.metrics[metric][i]], marker="v", linestyle="none",
                    color=drawn.get_color(), label="_barrier")  # fmt: skip
    ax.set_xlabel("t (0: first checkpoint, 1: second)")
    ax.set_ylabel(metric)
    ax.legend()
    return ax


def plot_barrier_matrix(
    matrix: Any,
    ax: Axes | None = None,
    *,
    which: str = "after",
    annotate: bool = True,
    **kwargs: Any,
) -> Axes:
    """The pairwise barriers of :func:`landscape.paths.barrier_matrix` as a heat map, one
    cell per pair, each cell's value written in it: which checkpoints share a basin.

    Args:
        matrix: a :class:`~landscape.paths.BarrierMatrix`.
        ax: axes to draw on.
        which: ``"after"`` (alignment; ``"before"`` when the matrix has none) or
            ``"before"``.
        annotate: write each barrier in its cell.
        **kwargs: passed to ``Axes.imshow`` (``cmap``, ``vmin``, ``vmax``, ...).

    Returns:
        The Axes: ``ax.images[0]`` holds the matrix (its colour bar as ``.colorbar``),
        ``ax.texts`` the values, the ticks the labels.

    Raises:
        ValueError: ``which`` not ``"after"`` or ``"before"``.
    """
    if which not in ("after", "before"):
        raise ValueError(f"expected which='after' or 'before', got {which!r}")
    ax = get_ax(ax)
    values = matrix.after if which == "after" and matrix.after is not None else matrix.before
    shown = "after" if values is matrix.after else "before"
    values = np.asarray(values, dtype=float)
    kwargs.setdefault("cmap", "viridis")
    kwargs.setdefault("vmin", 0.0)
    image = ax.imshow(values, **kwargs)
    ax.figure.colorbar(image, ax=ax, label="loss barrier")
    ticks = np.arange(len(matrix.labels))
    ax.set_xticks(ticks, matrix.labels, rotation=45, ha="right")
    ax.set_yticks(ticks, matrix.labels)
    if annotate:
        middle = np.nanmax(values) / 2 if np.isfinite(values).any() else 0.0
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize="small",
                    color="black" if v > middle else "white")  # fmt: skip
    method = matrix.settings.get("align")
    ax.set_title(f"barrier after {method} alignment" if shown == "after" else "barrier as given")
    return ax


def plot_path_plane(
    surface: Surface,
    paths: Any,
    metric: str = "loss",
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """The paths drawn in the plane of (a, b, bend) over a surface of that plane.

    The surface is computed around ``a`` along :func:`landscape.planes.checkpoint_plane`'s
    directions; each path's points are ``settings["xy"]`` (from
    :func:`landscape.paths.connect_checkpoints`); a, b and the bend are marked.

    Args:
        surface: a 2D surface over the plane of (a, b, bend).
        paths: ``{kind: PathResult}`` (or a Connection) with ``xy`` in their settings.
        metric: the metric of the contour.
        ax: axes to draw on.
        **kwargs: passed to :func:`~landscape.plotting.plot_contour`.

    Returns:
        The Axes.

    Raises:
        ValueError: a path without plane coordinates.
    """
    ax = get_ax(ax)
    kwargs.setdefault("mark_center", False)
    plot_contour(surface, metric, ax, **kwargs)
    coords = None
    for kind, result in _as_mapping(paths).items():
        xy = result.settings.get("xy")
        if xy is None:
            raise ValueError(f"path {kind!r} has no plane coordinates (settings['xy'])")
        xy = np.asarray(xy, dtype=float)
        ax.plot(xy[:, 0], xy[:, 1], label=kind, linewidth=2)
        coords = result.settings.get("plane_coords", coords)
    if coords is not None:
        coords = np.asarray(coords, dtype=float)
        for (px, py), name in zip(coords, ("a", "b", "bend"), strict=True):
            ax.plot([px], [py], marker="o", color="k", linestyle="none", label="_point")
            ax.annotate(name, (px, py), textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel("along b - a")
    ax.set_ylabel("towards the bend")
    ax.legend()
    return ax


def _variance_label(axis: str, ratio: float) -> str:
    return f"PC{axis} ({100 * ratio:.1f}% of the variance)"


def plot_trajectory(
    trajectory: Any,
    metric: str = "loss",
    ax: Axes | None = None,
    *,
    label_every: int = 1,
    **kwargs: Any,
) -> Axes:
    """A training run on its PCA plane: the contour of the surface (when computed), the
    path with each point labelled by its step, the axes labelled with explained variance.

    Args:
        trajectory: a :class:`~landscape.trajectory.Trajectory`.
        metric: the contour's metric.
        ax: axes to draw on.
        label_every: label one point in this many (the last always).
        **kwargs: passed to :func:`~landscape.plotting.plot_contour`.

    Returns:
        The Axes; the path is the last line drawn before the labels.
    """
    ax = get_ax(ax)
    if trajectory.surface is not None:
        kwargs.setdefault("mark_center", False)
        plot_contour(trajectory.surface, metric, ax, **kwargs)
    xy, steps = np.asarray(trajectory.coords, float), np.asarray(trajectory.steps, float)
    ax.plot(xy[:, 0], xy[:, 1], "-o", color="tab:red", markersize=3, label="trajectory")
    ax.plot([xy[-1, 0]], [xy[-1, 1]], marker="*", markersize=12, color="tab:red",
            linestyle="none", label="final")  # fmt: skip
    for k, (px, py) in enumerate(xy):
        if k % max(1, int(label_every)) == 0 or k == len(xy) - 1:
            ax.annotate(f"{steps[k]:g}", (px, py), textcoords="offset points", xytext=(3, 3),
                        fontsize="x-small")  # fmt: skip
    ratio = np.asarray(trajectory.explained_variance, float)
    ax.set_xlabel(_variance_label("1", ratio[0]))
    ax.set_ylabel(_variance_label("2", ratio[1]))
    return ax


def plot_projection_error(
    trajectory: Any,
    metric: str = "loss",
    ax: Axes | None = None,
    *,
    log: bool = False,
) -> Axes:
    """Each checkpoint's own value of a metric beside the value at its projected point.

    Args:
        trajectory: a :class:`~landscape.trajectory.Trajectory`.
        metric: the metric compared.
        ax: axes to draw on.
        log: log scale on the value axis.

    Returns:
        The Axes; ``lines[0]`` the true values, ``lines[1]`` the projected ones.
    """
    ax = get_ax(ax)
    steps = np.asarray(trajectory.steps, float)
    ax.plot(steps, trajectory.true[metric], "-o", markersize=3, label="checkpoint (true)")
    ax.plot(steps, trajectory.projected[metric], "--s", markersize=3,
            label="its projection on the plane")  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    if log:
        ax.set_yscale("log")
    ax.legend()
    return ax
