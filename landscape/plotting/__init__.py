"""Figures of loss landscapes: lines, contours, heatmaps, 3D surfaces, spectra, comparisons.

Axes-level functions (``plot_line``, ``plot_contour``, ``plot_contourf``, ``plot_heatmap``,
``plot_surface3d``, ``plot_convexity``, ``plot_spectral_density``, ``plot_eigenvalues``,
``plot_block_curvature``, ``plot_block_densities``, ``plot_block_js_distance``,
``plot_lines_compare``, ``plot_tracking``,
``plot_barrier_matrix``) take ``ax=None`` (the
current axes is used then) and return the Axes they drew on. Figure-level helpers
(``plot_contours_compare``, ``plot_measures``, ``plot_correlation``) lay out several axes and
return the Figure. A colour bar, when drawn, is reachable as ``mappable.colorbar`` (the first
entry of ``ax.collections``).

Metric arrays of a :class:`~landscape.surface.Surface` are indexed ``[i, j]`` for the point
``(x[i], y[j])``; matplotlib wants rows along y, so every 2D plot draws the transpose. Non-finite
values (inf, NaN) are masked, never drawn, and never used to choose levels or colour limits.
Every plot of a surface chooses a log scale the same way (``log=None``: when the finite positive
values span more than two decades), linear contour levels are round numbers, and the checkpoint
``(0, 0)`` is marked with a star, also on the 3D surface.

Modules: :mod:`~landscape.plotting.surfaces` (one surface: lines and contours),
:mod:`~landscape.plotting.heatmaps` (heatmaps, the convexity map),
:mod:`~landscape.plotting.surface3d` (the 3D surface), :mod:`~landscape.plotting.spectra`
(Hessian spectra), :mod:`~landscape.plotting.comparisons` (several checkpoints),
:mod:`~landscape.plotting.tracking` (training runs, many-model studies) and
:mod:`~landscape.plotting.style` (styling and saving). Importing this package imports matplotlib;
``import landscape`` alone does not.

Nothing here changes matplotlib's global settings or calls ``plt.show()``; publication styling is
the context manager :func:`landscape_style`.
"""

from ._common import CENTER_STYLE as CENTER_STYLE
from ._common import DEFAULT_NUM_LEVELS as DEFAULT_NUM_LEVELS
from ._common import LOG_SPAN as LOG_SPAN
from .comparisons import STDERR_BARS as STDERR_BARS
from .comparisons import plot_contours_compare, plot_lines_compare, plot_measures
from .paths import plot_barrier_matrix as plot_barrier_matrix
from .paths import plot_path_plane as plot_path_plane
from .paths import plot_paths as plot_paths
from .paths import plot_projection_error as plot_projection_error
from .paths import plot_trajectory as plot_trajectory
from .spectra import (
    plot_block_curvature,
    plot_block_densities,
    plot_block_js_distance,
    plot_eigenvalues,
    plot_spectral_density,
)
from .style import landscape_style, save_figure
from .surfaces import CONVEXITY_LABEL as CONVEXITY_LABEL
from .surfaces import (
    plot_contour,
    plot_contourf,
    plot_convexity,
    plot_heatmap,
    plot_line,
    plot_surface3d,
)
from .tracking import plot_correlation, plot_tracking, plot_tracking_run

__all__ = [
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
]
