"""Helpers shared by the plotting modules: checks, masking, log choice, levels, norms, markers."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm, Normalize

from landscape.surface import Surface

#: Default number of contour levels when ``levels`` is not given (linear levels: about this many).
DEFAULT_NUM_LEVELS = 20
#: Finite positive values spanning more than this ratio get a log scale by default.
LOG_SPAN = 100.0
#: Marker style of the checkpoint (the centre, ``(0, 0)``).
CENTER_STYLE: dict[str, Any] = {
    "marker": "*",
    "color": "white",
    "markeredgecolor": "black",
    "markersize": 10,
}
#: Steps of round linear contour levels: 1, 2, 2.5 or 5 times a power of ten.
ROUND_STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)

Extend = Literal["neither", "both", "min", "max"]


def finite_values(values: np.ndarray, what: str) -> np.ndarray:
    """The finite entries of ``values``; ValueError naming ``what`` if there are none."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ValueError(
            f"{what} has no finite values (all NaN or inf); nothing to plot. "
            "Compute the surface first, or plot another metric."
        )
    return finite


def finite_or_nan(values: Any) -> np.ndarray:
    """``values`` as a float array with inf replaced by NaN (a gap in lines and bars)."""
    arr = np.asarray(values, dtype=float)
    return np.where(np.isfinite(arr), arr, np.nan)


def check_surface(surface: Any) -> Surface:
    """``surface`` itself; TypeError if it is not a :class:`Surface`."""
    if not isinstance(surface, Surface):
        raise TypeError(f"expected a landscape Surface, got {type(surface).__name__}")
    return surface


def metric_2d(surface: Surface, metric: str) -> np.ndarray:
    """The metric as a float array of shape (nx, ny), checked against the grid."""
    check_surface(surface)
    if surface.y is None:
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


def use_log(finite: np.ndarray, log: bool | None) -> bool:
    """Whether to use a log scale: ``log`` if given, else when positive data span > 2 decades.

    Every plot of a surface (contours, heatmap, 3D) makes this choice the same way, so the
    figures of one surface agree.
    """
    if log is not None:
        return bool(log)
    lo, hi = float(finite.min()), float(finite.max())
    return lo > 0 and hi / lo > LOG_SPAN


def plottable(z: np.ndarray, log: bool, what: str) -> tuple[np.ma.MaskedArray, np.ndarray]:
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
                stacklevel=4,
            )
        keep = positive
    return np.ma.masked_array(z, mask=~keep), z[keep]


def value_range(
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


def _check_levels(levels: Any, log: bool) -> np.ndarray:
    arr = np.asarray(levels, dtype=float)
    if arr.ndim != 1 or arr.size < 2 or not np.all(np.isfinite(arr)):
        raise ValueError(f"levels must be a count or at least 2 finite numbers, got {levels!r}")
    if np.any(np.diff(arr) <= 0):
        raise ValueError(f"levels must be strictly increasing, got {arr.tolist()}")
    if log and arr[0] <= 0:
        raise ValueError(f"levels must be positive on a log scale, got {arr.tolist()}")
    return arr


def _round_ticks(lo: float, hi: float, num_bins: int) -> np.ndarray:
    """Round numbers (1, 2, 2.5, 5 times a power of ten) spaced evenly, covering [lo, hi]."""
    locator = mticker.MaxNLocator(nbins=max(num_bins, 1), steps=list(ROUND_STEPS))
    ticks = np.asarray(locator.tick_values(lo, hi), dtype=float)
    step = float(ticks[1] - ticks[0])
    # remove the float noise of step * k (0.30000000000000004 -> 0.3)
    ticks = np.round(ticks / step) * step
    digits = max(0, -int(np.floor(np.log10(step))) + 2)
    return np.round(ticks, digits)


def contour_levels(
    levels: int | Sequence[float] | np.ndarray | None,
    lo: float,
    hi: float,
    log: bool,
    *,
    lines: bool,
    fixed_lo: bool = False,
    fixed_hi: bool = False,
) -> np.ndarray:
    """Contour levels for values in ``[lo, hi]``.

    ``levels`` given as values are checked and returned. Given as a count (default 20):

    - on a log scale, that many log-spaced levels from ``lo`` to ``hi`` (filled), or that many
      strictly inside (lines, where a "contour" at an end is only a point);
    - on a linear scale, about that many **round** levels (1, 2, 2.5 or 5 times a power of ten,
      matplotlib's ``MaxNLocator``). Filled: the lowest level lies strictly below the minimum and
      the highest at or above the maximum, so the minimum's region is drawn; an end fixed by the
      caller (``vmin``/``vmax``, ``fixed_lo``/``fixed_hi``) is kept exactly. Lines: the round
      levels strictly inside ``(lo, hi)``, so the lowest line encloses the minimum.
    """
    if levels is not None and not isinstance(levels, (int, np.integer)):
        return _check_levels(levels, log)
    num = DEFAULT_NUM_LEVELS if levels is None else int(levels)
    least = 1 if lines else 2
    if num < least:
        raise ValueError(f"levels must be at least {least} when given as a count, got {num}")
    if log:
        if lines:
            return np.geomspace(lo, hi, num + 2)[1:-1]
        return np.geomspace(lo, hi, num)
    if lines:
        ticks = _round_ticks(lo, hi, num + 1)
        inside = ticks[(ticks > lo) & (ticks < hi)]
        return inside if inside.size else np.array([(lo + hi) / 2])
    ticks = _round_ticks(lo, hi, num - 1)
    step = float(ticks[1] - ticks[0])
    if fixed_lo:
        ticks = np.concatenate([[lo], ticks[ticks > lo]])
    elif ticks[0] >= lo:  # the minimum sits on the lowest level: one more below it
        ticks = np.concatenate([[ticks[0] - step], ticks])
    if fixed_hi:
        ticks = np.concatenate([ticks[ticks < hi], [hi]])
    return ticks


def extend_of(kept: np.ndarray, lo: float, hi: float) -> Extend:
    """Colour-bar extension telling that some data lie outside [lo, hi]."""
    below, above = bool((kept < lo).any()), bool((kept > hi).any())
    extends: dict[tuple[bool, bool], Extend] = {
        (False, False): "neither",
        (True, True): "both",
        (True, False): "min",
    }
    return extends.get((below, above), "max")


def make_norm(lo: float, hi: float, log: bool) -> Normalize:
    """A colour norm from ``lo`` to ``hi``, logarithmic if ``log``."""
    return LogNorm(lo, hi) if log else Normalize(lo, hi)


def axis_labels(surface: Surface) -> tuple[str, str]:
    """The x and y axis labels stored with the surface (``x_label``, ``y_label``)."""
    return str(surface.attrs.get("x_label", "x")), str(surface.attrs.get("y_label", "y"))


def center_on_grid(surface: Surface) -> bool:
    """Whether the checkpoint ``(0, 0)`` (``0`` for a line) lies inside the grid."""
    x = np.asarray(surface.x, dtype=float)
    if not x.min() <= 0 <= x.max():
        return False
    if surface.y is None:
        return True
    y = np.asarray(surface.y, dtype=float)
    return bool(y.min() <= 0 <= y.max())


def draw_center_marker(ax: Axes, surface: Surface) -> None:
    """Mark the checkpoint (0, 0) if it lies inside the grid."""
    if center_on_grid(surface):
        ax.plot([0.0], [0.0], linestyle="none", label="checkpoint", zorder=5, **CENTER_STYLE)


def label_plane(ax: Axes, surface: Surface, *, mark_center: bool) -> None:
    """Name a plane's x and y axes after its directions; with ``mark_center``, mark the
    checkpoint (see :func:`draw_center_marker`)."""
    x_label, y_label = axis_labels(surface)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    if mark_center:
        draw_center_marker(ax, surface)


def value_at_center(surface: Surface, z: np.ndarray) -> float:
    """``z`` (shape (nx, ny)) at ``(0, 0)``, bilinear between grid points; NaN off the grid."""
    if not center_on_grid(surface):
        return float("nan")
    x, y = np.asarray(surface.x, dtype=float), np.asarray(surface.y, dtype=float)
    ox, oy = np.argsort(x), np.argsort(y)
    xs, ys, zs = x[ox], y[oy], z[np.ix_(ox, oy)]
    i = int(np.clip(np.searchsorted(xs, 0.0, side="right") - 1, 0, len(xs) - 2))
    j = int(np.clip(np.searchsorted(ys, 0.0, side="right") - 1, 0, len(ys) - 2))
    tx = (0.0 - xs[i]) / (xs[i + 1] - xs[i])
    ty = (0.0 - ys[j]) / (ys[j + 1] - ys[j])
    corners = zs[i : i + 2, j : j + 2]
    weights = np.outer([1 - tx, tx], [1 - ty, ty])
    used = weights > 0
    if not np.all(np.isfinite(corners[used])):
        return float("nan")
    return float(np.sum(weights[used] * corners[used]))


def add_colorbar(fig: Any, mappable: Any, ax: Any, label: str, **kwargs: Any) -> Any:
    """A colour bar; on a log norm, ticks at 1, 2, 5 times powers of ten in scientific notation."""
    if isinstance(mappable.norm, LogNorm):
        kwargs.setdefault("ticks", mticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        kwargs.setdefault("format", mticker.LogFormatterSciNotation())
    return fig.colorbar(mappable, ax=ax, label=label, **kwargs)


def get_ax(ax: Axes | None) -> Axes:
    """``ax``, or the current axes when None; TypeError for anything but an Axes."""
    if ax is None:
        return plt.gca()
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
    return ax


def prepare_2d(
    surfaces: Sequence[Surface],
    metric: str,
    *,
    log: bool | None,
    vmin: float | None,
    vmax: float | None,
    levels: Any = None,
) -> tuple[list[np.ma.MaskedArray], np.ndarray, bool, float, float]:
    """Masked transposed arrays of the metric, the kept values, the log choice and value range.

    The choices are made once from the finite values of all ``surfaces`` together, so several
    panels share them.
    """
    raw = [metric_2d(s, metric) for s in surfaces]
    pooled = np.concatenate([finite_values(z, f"metric {metric!r}") for z in raw])
    if log is None and levels is not None and not isinstance(levels, (int, np.integer)):
        log_scale = use_log(pooled, None) and float(np.min(levels)) > 0
    else:
        log_scale = use_log(pooled, log)
    masked, kept = [], []
    for z in raw:
        m, k = plottable(z, log_scale, f"metric {metric!r}")
        masked.append(m.T)  # [i, j] = (x[i], y[j]) -> rows along y for matplotlib
        kept.append(k)
    kept_all = np.concatenate(kept)
    lo, hi = value_range(kept_all, vmin, vmax, log_scale)
    return masked, kept_all, log_scale, lo, hi


def prepare_contours(
    surfaces: Sequence[Surface],
    metric: str,
    *,
    levels: Any,
    log: bool | None,
    vmin: float | None,
    vmax: float | None,
    lines: bool,
) -> tuple[list[np.ma.MaskedArray], np.ndarray, Normalize, Extend]:
    """Masked transposed arrays, shared levels and norm, and colour-bar extension."""
    masked, kept, log_scale, lo, hi = prepare_2d(
        surfaces, metric, log=log, vmin=vmin, vmax=vmax, levels=levels
    )
    lev = contour_levels(
        levels, lo, hi, log_scale, lines=lines, fixed_lo=vmin is not None, fixed_hi=vmax is not None
    )
    lo, hi = min(lo, lev[0]), max(hi, lev[-1])
    return masked, lev, make_norm(lo, hi, log_scale), extend_of(kept, lev[0], lev[-1])
