"""Figures of training runs and of many-model studies.

- :func:`plot_tracking` (axes-level): one measure logged by a
  :class:`~landscape.tracking.Tracker` against the step, its standard error as a band, and
  its stability threshold (``2 / lr`` for ``lambda_max``, the optimizer's for the
  preconditioned and batch sharpness);
- :func:`plot_correlation` (figure-level): each measure against the generalization gap,
  and every measure's Kendall tau with its interval (and granulated tau).

Nothing here changes matplotlib's global settings or calls ``plt.show()``.
"""

from __future__ import annotations

import math
import textwrap
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ._common import get_ax
from .labels import measure_axis_label, measure_title

__all__ = ["plot_correlation", "plot_tracking", "plot_tracking_run"]


def plot_tracking(run: Any, measure: str, ax: Axes | None = None, *, lr: float | None = None,
                  **kwargs: Any) -> Axes:  # fmt: skip
    """A logged measure against the training step.

    Args:
        run: a :class:`~landscape.tracking.TrackingRun`.
        measure: the measure drawn. ``"slice"`` draws the loss along the slice direction,
            one line per log, coloured from light (early) to dark (late). NaN rows (a
            trace between its logs) are left out; a positive measure that spans more than
            two decades gets a log axis.
        ax: axes to draw on (default: the current axes).
        lr: learning rate; default the run's ``lr`` setting. With one, a ``lambda_max``
            plot gets a dashed line at ``2 / lr``. A measure logged with a threshold (the
            column ``<measure>_threshold``: ``preconditioned_sharpness``, 38/lr for Adam;
            ``batch_sharpness``, 2/lr) gets that threshold as a dashed line instead.
        **kwargs: passed to ``Axes.plot`` for the measure's line.

    Returns:
        The Axes; ``ax.lines[0]`` is the measure (for a slice, the first log's line).

    Raises:
        ValueError: the run has no such measure.

    Example:
        >>> from landscape.tracking import TrackingRun
        >>> steps = np.array([0, 10, 20])
        >>> run = TrackingRun(steps, {"lambda_max": np.array([1.0, 3.0, 4.0])},
        ...                   {"lambda_max": np.zeros(3)}, {"lr": 0.5})
        >>> fig, ax = plt.subplots()
        >>> [line.get_label() for line in plot_tracking(run, "lambda_max", ax).lines]
        ['$\\\\lambda_{\\\\max}$', '2 / lr = 4']
        >>> plt.close(fig)
    """
    ax = get_ax(ax)
    if measure not in run.values:
        raise ValueError(f"the run has no {measure!r}; it has {sorted(run.values)}")
    values = np.asarray(run.values[measure], dtype=np.float64)
    steps = np.asarray(run.steps)
    if measure == "slice":
        x = np.asarray(run.settings["slice_x"])
        colors = plt.get_cmap("viridis_r")(np.linspace(0.15, 1.0, max(len(steps), 1)))
        for row, step, color in zip(values, steps, colors, strict=False):
            ax.plot(x, row, color=color, label=f"step {step}", **kwargs)
        ax.set_xlabel("coordinate along the slice (filter-normalized)")
        ax.set_ylabel("loss")
        return ax
    label = measure_axis_label(measure)
    shown = np.isfinite(values)  # a trace between its logs is NaN: not computed
    (line,) = ax.plot(steps[shown], values[shown], label=label, **kwargs)
    err = np.asarray(run.stderr.get(measure, np.zeros_like(values)), dtype=np.float64)[shown]
    if np.any(err > 0):
        ax.fill_between(steps[shown], values[shown] - err, values[shown] + err,
                        color=line.get_color(), alpha=0.25, linewidth=0,
                        label="±1 standard error")  # fmt: skip
    lr = run.settings.get("lr") if lr is None else lr
    threshold = run.values.get(f"{measure}_threshold")
    if threshold is not None:  # logged at each step: a schedule moves it
        ax.plot(steps, threshold, color="0.3", linestyle="--", linewidth=1,
                label=f"threshold ({threshold[-1]:.4g} at the end)")  # fmt: skip
    elif measure == "lambda_max" and lr:
        ax.axhline(2 / lr, color="0.3", linestyle="--", linewidth=1, label=f"2 / lr = {2 / lr:.4g}")
    positive = values[shown][values[shown] > 0]
    if len(positive) == shown.sum() and len(positive) and positive.max() > 100 * positive.min():
        ax.set_yscale("log")  # spans decades
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    return ax


def plot_tracking_run(run: Any, *, fig: Figure | None = None) -> Figure:
    """Every measure of a run on a panel of its own (:func:`plot_tracking`), a measure's
    logged threshold on the measure's panel (an eigenvalue's residual column: on none).

    Returns:
        The Figure, one axes a measure, each with a legend.
    """
    measures = [  # a threshold on its measure's panel; a residual (error bound) on none
        m for m in run.values
        if not any(m.endswith(end) and m.removesuffix(end) in run.values
                   for end in ("_threshold", "_residual"))
    ]  # fmt: skip
    cols = min(len(measures), 3)
    rows = -(-len(measures) // cols)
    if fig is None:
        fig = Figure(figsize=(3.6 * cols, 2.8 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, measure in zip(axes, measures, strict=False):
        plot_tracking(run, measure, ax)
        ax.legend(loc="best")
    for ax in axes[len(measures) :]:
        ax.remove()
    return fig


def plot_correlation(correlation: Any, *, fig: Figure | None = None) -> Figure:
    """Each measure against the generalization gap, and the taus with their intervals.

    Args:
        correlation: a :class:`~landscape.correlate.Correlation`.
        fig: figure to draw in; a new one if None.

    Returns:
        The Figure: one scatter panel per measure (titled with the measure in words and its tau),
        then the panel of taus, its last axes: a dot and an interval per measure, and a
        diamond for the granulated tau when there are hyperparameters.

    Example:
        >>> from landscape.correlate import Correlation
        >>> found = Correlation(["a", "b", "c"], np.array([0.1, 0.2, 0.3]),
        ...                     {"trace": np.array([1.0, 2.0, 3.0])}, {"trace": 1.0},
        ...                     {"trace": (1.0, 1.0)}, settings={"gap": "accuracy"})
        >>> [ax.get_title() for ax in plot_correlation(found).axes]
        ['Hessian trace\\ntau +1.00', "Kendall's tau with the gap"]
        >>> plt.close("all")
    """
    measures = list(correlation.tau)
    cols = min(len(measures) + 1, 4)
    rows = math.ceil((len(measures) + 1) / cols)
    if fig is None:
        fig = plt.figure(figsize=(2.9 * cols, 2.5 * rows + 0.2), layout="constrained")
    grid = list(fig.subplots(rows, cols, squeeze=False).ravel())
    for extra in grid[len(measures) + 1 :]:
        extra.remove()
    gap_label = {"accuracy": "gap (train - test accuracy)", "loss": "gap (test - train loss)"}
    xlabel = gap_label.get(correlation.settings.get("gap"), "generalization gap")
    for ax, measure in zip(grid, measures, strict=False):
        ax.scatter(correlation.gap, correlation.values[measure], s=14)
        title = textwrap.fill(measure_title(measure), 24)
        ax.set_title(f"{title}\ntau {correlation.tau[measure]:+.2f}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(measure_axis_label(measure))
    ax = grid[len(measures)]
    where = np.arange(len(measures))
    taus = np.array([correlation.tau[m] for m in measures])
    low, high = np.array([correlation.interval[m] for m in measures]).T
    ax.errorbar(taus, where, xerr=[taus - low, high - taus], fmt="o", capsize=3, label="tau")
    granulated = correlation.granulated_tau
    if granulated:
        ax.scatter([granulated[m] for m in measures], where, marker="D", color="C1", zorder=3,
                   label="granulated tau")  # fmt: skip
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncols=2, frameon=False)
    ax.axvline(0, color="0.5", linewidth=0.8)
    ax.set_yticks(where, [measure_title(m) for m in measures])
    ax.invert_yaxis()
    ax.set_xlim(-1.05, 1.05)
    ax.set_title("Kendall's tau with the gap")
    return fig
