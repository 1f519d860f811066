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

import importlib as _importlib
import importlib.util as _importlib_util
import sys as _sys
import types as _types

from ._version import __version__ as __version__

# Every public name and the module that defines it. Nothing is imported until a name is
# first asked for (PEP 562): ``import landscape`` and the command line's ``--help`` start
# in milliseconds; ``ls.compute_surface`` and ``from landscape import compute_surface``
# work as before, and ``dir(landscape)`` lists them all.
_SOURCES = {
    ".alignment": ("Alignment", "MergeResult", "align", "merge"),
    ".checkpoint": ("file_sha256", "load_checkpoint", "load_state", "save_checkpoint"),
    ".compare": ("Comparison", "compare_checkpoints", "plot_comparison", "write_tables"),
    ".correlate": ("Correlation", "correlate", "write_correlation"),
    ".directions": (
        "Directions",
        "interpolation_direction",
        "normalize_direction",
        "pca_directions",
        "project_states",
        "random_direction",
        "random_directions",
    ),
    ".evaluate": ("Objective",),
    ".io": ("load", "save"),
    ".hessian": (
        "BlockCurvature",
        "DensityResult",
        "EigenResult",
        "ExtremeEigenvalues",
        "HessianOperator",
        "HessianResults",
        "TraceResult",
        "block_curvature",
        "extreme_eigenvalues",
        "hessian_directions",
        "hessian_eigenpairs",
        "hessian_trace",
        "load_hessian",
        "min_max_ratio",
        "save_hessian",
        "spectral_density",
    ),
    ".optim": (
        "StabilityGuard",
        "batch_sharpness",
        "gradient_alignment",
        "preconditioned_sharpness",
        "preconditioner",
    ),
    ".sharpness": ("MEASURES", "SharpnessResult", "load_sharpness", "save_sharpness", "sharpness"),
    ".surface": ("Surface", "compute_surface", "load_surface", "parse_range", "save_surface"),
    ".tracking": ("Tracker", "TrackingRun", "load_tracking"),
    ".plotting": (
        "landscape_style",
        "plot_block_curvature",
        "plot_block_densities",
        "plot_block_js_distance",
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
        "plot_tracking_run",
        "save_figure",
    ),
}
_MODULE_OF = {name: module for module, names in _SOURCES.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    """Import a public name's module (or a submodule, ``ls.storage``) when first asked for."""
    module = _MODULE_OF.get(name)
    if module is not None:
        value = getattr(_importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value
    if not name.startswith("__") and _importlib_util.find_spec(f"{__name__}.{name}") is not None:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, the public names not yet imported included."""
    return sorted(set(globals()) | set(__all__))


class _Package(_types.ModuleType):
    """``landscape`` itself: ``ls.sharpness`` and ``ls.correlate`` stay the functions.

    Importing a submodule binds it on its package; two submodules share their name with the
    function they define, and the function is the public name (as in version 0.2).
    """

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, _types.ModuleType) and name in _MODULE_OF:
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package
