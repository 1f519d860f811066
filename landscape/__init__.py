"""landscape: loss-landscape analysis of trained PyTorch models.

Surfaces along normalized random, Hessian, interpolation or PCA directions; Hessian
eigenpairs, trace and spectral density; sharpness and flatness measures with error bars;
resumable HDF5 results; publication plots; comparisons of many checkpoints.

Example:
    >>> import torch
    >>> from torch import nn
    >>> import landscape as ls
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> data = (torch.randn(32, 4), torch.randint(0, 3, (32,)))
    >>> surface = ls.compute_surface(model, data, ls.random_directions(model),
    ...                              [-1, 0, 1], [-1, 0, 1], progress=False)
    >>> surface["loss"].shape
    (3, 3)
"""

__version__ = "0.2.0"

import importlib as _importlib

from .checkpoint import file_sha256, load_checkpoint, load_state, save_checkpoint
from .compare import Comparison, compare_checkpoints, plot_comparison, write_tables
from .correlate import Correlation, correlate, write_correlation
from .directions import (
    Directions,
    interpolation_direction,
    normalize_direction,
    pca_directions,
    project_states,
    random_direction,
    random_directions,
)
from .evaluate import Objective
from .hessian import (
    BlockCurvature,
    DensityResult,
    EigenResult,
    ExtremeEigenvalues,
    HessianOperator,
    HessianResults,
    TraceResult,
    block_curvature,
    extreme_eigenvalues,
    hessian_directions,
    hessian_eigenpairs,
    hessian_trace,
    load_hessian,
    min_max_ratio,
    save_hessian,
    spectral_density,
)
from .sharpness import MEASURES, SharpnessResult, load_sharpness, save_sharpness, sharpness
from .surface import Surface, compute_surface, load_surface, parse_range, save_surface
from .tracking import Tracker, TrackingRun, load_tracking

__all__ = [
    "BlockCurvature",
    "Comparison",
    "Correlation",
    "DensityResult",
    "Directions",
    "EigenResult",
    "ExtremeEigenvalues",
    "HessianOperator",
    "HessianResults",
    "MEASURES",
    "Objective",
    "SharpnessResult",
    "Surface",
    "TraceResult",
    "Tracker",
    "TrackingRun",
    "block_curvature",
    "compare_checkpoints",
    "compute_surface",
    "correlate",
    "extreme_eigenvalues",
    "file_sha256",
    "hessian_directions",
    "hessian_eigenpairs",
    "hessian_trace",
    "interpolation_direction",
    "landscape_style",
    "load_checkpoint",
    "load_hessian",
    "load_sharpness",
    "load_state",
    "load_surface",
    "load_tracking",
    "min_max_ratio",
    "normalize_direction",
    "parse_range",
    "pca_directions",
    "plot_block_curvature",
    "plot_comparison",
    "plot_contour",
    "plot_contourf",
    "plot_contours_compare",
    "plot_convexity",
    "plot_correlation",
    "plot_eigenvalues",
    "plot_heatmap",
    "plot_line",
    "plot_lines_compare",
    "plot_measures",
    "plot_spectral_density",
    "plot_surface3d",
    "plot_tracking",
    "project_states",
    "random_direction",
    "random_directions",
    "save_checkpoint",
    "save_figure",
    "save_hessian",
    "save_sharpness",
    "save_surface",
    "sharpness",
    "spectral_density",
    "write_correlation",
    "write_tables",
]


# The plotting names load matplotlib (about 1.5 s), so they are imported on first use
# (PEP 562): ``import landscape`` stays fast, ``landscape.plot_contour`` and
# ``from landscape import plot_contour`` work as before.
_LAZY_PLOTTING = (
    "landscape_style",
    "plot_block_curvature",
    "plot_contour",
    "plot_contourf",
    "plot_contours_compare",
    "plot_convexity",
    "plot_correlation",
    "plot_eigenvalues",
    "plot_heatmap",
    "plot_line",
    "plot_lines_compare",
    "plot_measures",
    "plot_spectral_density",
    "plot_surface3d",
    "plot_tracking",
    "save_figure",
)


def __getattr__(name: str):
    """Import ``landscape.plotting`` when one of its names (or itself) is first asked for."""
    if name == "plotting" or name in _LAZY_PLOTTING:
        plotting = _importlib.import_module(f"{__name__}.plotting")
        if name == "plotting":
            return plotting
        value = getattr(plotting, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, the lazily imported plotting names included."""
    return sorted(set(globals()) | set(__all__))
