"""Figures of Hessian spectra: a spectral density on a log axis, eigenvalues as bars, the
curvature of each block of weights, the blocks' densities and the distances between them."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes

from ._common import finite_or_nan, finite_values, get_ax
from .labels import measure_axis_label

__all__ = [
    "plot_block_curvature",
    "plot_block_densities",
    "plot_block_js_distance",
    "plot_eigenvalues",
    "plot_spectral_density",
]


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
        >>> import matplotlib.pyplot as plt
        >>> g = np.linspace(-1, 5, 50)
        >>> fig, ax = plt.subplots()
        >>> plot_spectral_density(g, np.exp(-(g**2)), ax=ax).get_yscale()
        'log'
        >>> plt.close(fig)
    """
    ax = get_ax(ax)
    grid = np.asarray(grid, dtype=float)
    density = np.asarray(density, dtype=float)
    if grid.ndim != 1 or grid.shape != density.shape:
        raise ValueError(
            f"grid and density must be 1D of the same length, got {grid.shape} and {density.shape}"
        )
    finite = finite_values(density, "density")
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
        >>> import matplotlib.pyplot as plt
        >>> fig, ax = plt.subplots()
        >>> len(plot_eigenvalues([5.0, 2.0, 0.5], ax=ax).patches)
        3
        >>> plt.close(fig)
    """
    ax = get_ax(ax)
    values = np.asarray(eigenvalues, dtype=float).reshape(-1)
    finite = finite_values(values, "eigenvalues")
    yerr = None
    if errors is not None:
        yerr = np.asarray(errors, dtype=float).reshape(-1)
        if yerr.shape != values.shape:
            raise ValueError(f"errors has shape {yerr.shape}, expected {values.shape}")
        yerr = finite_or_nan(yerr)
    index = np.arange(1, values.size + 1)
    kwargs.setdefault("color", "C0")
    ax.bar(index, finite_or_nan(values), yerr=yerr, capsize=3, **kwargs)
    ax.set_xticks(index)
    ax.set_xlabel("eigenvalue index")
    ax.set_ylabel("eigenvalue")
    if log:
        if finite.min() > 0:
            ax.set_yscale("log")
        else:
            ax.set_yscale("symlog", linthresh=max(float(np.abs(finite).min()), 1e-12))
    return ax


def plot_block_curvature(
    result: Any,
    ax: Axes | None = None,
    *,
    log: bool | None = None,
) -> Axes:
    """Plot each block's ``lambda_max`` and ``trace`` (with 1.96 standard errors) as bars.

    Args:
        result: a :class:`~landscape.hessian.BlockCurvature`.
        ax: axes to draw on; the current axes if None.
        log: log y axis (symmetric log where a value is not positive); ``None``: when the
            finite values span more than two decades.

    Returns:
        The Axes; the bars are ``ax.patches``, blocks first for ``lambda_max`` then for the
        trace, and the legend names the two in words (not ``lambda_max``).

    Raises:
        ValueError: no finite value to show.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> from landscape.hessian import BlockCurvature
        >>> v = {"a": {"lambda_max": 2.0, "trace": 3.0, "trace_stderr": 0.1},
        ...      "b": {"lambda_max": 1.0, "trace": 1.5, "trace_stderr": 0.0}}
        >>> r = BlockCurvature(v, {}, {"a": 3, "b": 2}, {}, 0)
        >>> fig, ax = plt.subplots()
        >>> len(plot_block_curvature(r, ax=ax).patches)
        4
        >>> plt.close(fig)
    """
    ax = get_ax(ax)
    blocks = list(result.values)
    top = np.array([result.values[b]["lambda_max"] for b in blocks], dtype=float)
    trace = np.array([result.values[b]["trace"] for b in blocks], dtype=float)
    error = np.array([result.values[b]["trace_stderr"] for b in blocks], dtype=float)
    finite = finite_values(np.concatenate([top, trace]), "block curvature")
    index = np.arange(len(blocks))
    width = 0.4
    ax.bar(index - width / 2, finite_or_nan(top), width, color="C0",
           label=f"largest eigenvalue {measure_axis_label('lambda_max')}")  # fmt: skip
    ax.bar(index + width / 2, finite_or_nan(trace), width, yerr=1.96 * finite_or_nan(error),
           capsize=2, label="trace, error bars ±1.96 standard errors", color="C1")  # fmt: skip
    ax.set_xticks(index, blocks, rotation=45 if len(blocks) > 4 else 0, ha="right")
    ax.set_xlabel("block")
    ax.set_ylabel("curvature of the block's Hessian")
    positive = finite[finite > 0]
    if log is None:
        log = positive.size == finite.size and positive.max() > 100 * positive.min()
    if log:
        if positive.size == finite.size:
            ax.set_yscale("log")
        else:
            ax.set_yscale("symlog", linthresh=max(float(np.abs(finite[finite != 0]).min()), 1e-12))
    low, high = ax.get_ylim()  # room above the tallest bar for the legend
    ax.set_ylim(low, high * 6 if ax.get_yscale() == "log" else high + 0.35 * (high - low))
    ax.legend(loc="upper right")
    return ax


def _needs(result: Any, field: str, keyword: str) -> Any:
    """``result.<field>``; ValueError saying which keyword computes it when it is ``None``."""
    found = getattr(result, field, None)
    if found is None:
        raise ValueError(f"expected a BlockCurvature with {field}, got one without: compute it "
                         f"with block_curvature(..., {keyword}=True)")  # fmt: skip
    return found


def plot_block_densities(
    result: Any,
    ax: Axes | None = None,
    *,
    floor: float | None = None,
    **kwargs: Any,
) -> Axes:
    """Plot each block's spectral density (on their common grid) on a log y axis, one line a
    block, the legend naming the blocks.

    Args:
        result: a :class:`~landscape.hessian.BlockCurvature` computed with ``densities=True``.
        ax: axes to draw on; the current axes if None.
        floor: as in :func:`plot_spectral_density`; default ``1e-8`` times the largest
            finite density of any block.
        **kwargs: passed to ``Axes.plot``.

    Returns:
        The Axes; ``ax.lines`` holds one line a block, in the order of the blocks (a block
        with NaN densities is skipped).

    Raises:
        ValueError: the result has no densities, or none with a positive value.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> from landscape.hessian import BlockCurvature, DensityResult
        >>> g = np.linspace(-1, 3, 40)
        >>> d = {b: DensityResult(g, np.exp(-((g - m) ** 2)), None, None, 0)
        ...      for b, m in (("a", 0.0), ("b", 2.0))}
        >>> r = BlockCurvature({}, {}, {}, {}, 0, densities=d)
        >>> fig, ax = plt.subplots()
        >>> len(plot_block_densities(r, ax=ax).lines)
        2
        >>> plt.close(fig)
    """
    densities = _needs(result, "densities", "densities")
    ax = get_ax(ax)
    shown = {b: d for b, d in densities.items() if np.isfinite(d.density).all()}
    top = max((float(np.max(d.density)) for d in shown.values()), default=0.0)
    if top <= 0:
        raise ValueError("expected a block density with a positive value, got none")
    floor = 1e-8 * top if floor is None else floor
    for block, d in shown.items():
        plot_spectral_density(d.grid, d.density, ax, floor=floor, label=block, **kwargs)
    ax.set_ylabel("density of the block's Hessian")
    ax.legend(title="block")
    return ax


def plot_block_js_distance(
    result: Any,
    ax: Axes | None = None,
    *,
    annotate: bool = True,
    **kwargs: Any,
) -> Axes:
    """The Jensen-Shannon distance between every two blocks' spectral densities as a heat
    map (0: alike spectra, 1: disjoint ones; Zhang et al. 2024).

    Args:
        result: a :class:`~landscape.hessian.BlockCurvature` computed with ``densities=True``.
        ax: axes to draw on; the current axes if None.
        annotate: write each distance in its cell.
        **kwargs: passed to ``Axes.imshow`` (``cmap``, ...; ``vmin=0``, ``vmax=1`` unless
            given).

    Returns:
        The Axes: ``ax.images[0]`` holds the matrix (its colour bar as ``.colorbar``),
        ``ax.texts`` the values, the ticks the blocks.

    Raises:
        ValueError: the result has no densities.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> from landscape.hessian import BlockCurvature
        >>> r = BlockCurvature({"a": {}, "b": {}}, {}, {}, {}, 0,
        ...                    js_distance=np.array([[0.0, 0.4], [0.4, 0.0]]))
        >>> fig, ax = plt.subplots()
        >>> plot_block_js_distance(r, ax=ax).images[0].get_array().max()
        np.float64(0.4)
        >>> plt.close(fig)
    """
    values = np.asarray(_needs(result, "js_distance", "densities"), dtype=float)
    ax = get_ax(ax)
    blocks = list(result.values)
    kwargs.setdefault("cmap", "viridis")
    kwargs.setdefault("vmin", 0.0)
    kwargs.setdefault("vmax", 1.0)
    image = ax.imshow(values, **kwargs)
    ax.figure.colorbar(image, ax=ax, label="Jensen-Shannon distance of the spectra")
    ticks = np.arange(len(blocks))
    ax.set_xticks(ticks, blocks, rotation=45, ha="right")
    ax.set_yticks(ticks, blocks)
    if annotate:
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize="small",
                    color="black" if v > 0.5 else "white")  # fmt: skip
    return ax
