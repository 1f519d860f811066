"""Paths between minima: straight lines, mode-connecting curves, loss barriers, model soups.

Two checkpoints ``a`` and ``b`` of one architecture are joined by a curve ``phi(t)``,
``t`` in [0, 1], that ends exactly at ``a`` and ``b``: a line, a quadratic Bezier curve
or a one-bend polygonal chain with bend ``theta`` (formulas in
:mod:`landscape.paths.curves`).

:func:`fit_curve` finds the bend ``theta`` by minimizing the expected loss along the curve,
``E_{t ~ U(0, 1)} L(phi_theta(t))``, with one ``t`` drawn per step (Garipov et al. 2018,
"Loss surfaces, mode connectivity, and fast ensembling of DNNs"; Draxler et al. 2018).
The curve moves the floating-point parameters (and the bend holds one tensor per
parameter); floating buffers such as BatchNorm running statistics move along the straight
line between the ends, or are re-estimated from the data at every point with
``bn_reestimate=True`` (:func:`reestimate_bn`; needed for BatchNorm networks, whose
running statistics at an interior point of a curve belong to neither end).

:func:`evaluate_path` gives the loss and metrics along a curve and the *loss barrier*
(Frankle et al. 2020, "Linear mode connectivity and the lottery ticket hypothesis"):
``max_t [L(t) - ((1 - t) L(0) + t L(1))]`` and the ``t`` where it is reached.
:func:`connect_checkpoints` does the whole study in one call, with ``align=`` after
permuting the second checkpoint's units into the first one's frame (the barrier before
alignment kept in ``Connection.unaligned``, :mod:`landscape.alignment`) and ``repair=``
(``"reset_bn"`` or REPAIR) at every point; :func:`model_soup` is the uniform average of
several checkpoints (Wortsman et al. 2022); :func:`barrier_matrix` gives the barrier
between every pair of a set of checkpoints, before and after alignment.

One module per job: ``curves`` (the curves and the results), ``fitting`` (:func:`fit_curve`),
``evaluation`` (:func:`evaluate_path`, :func:`loss_barrier`, :func:`connect_checkpoints`),
``bn`` (:func:`reestimate_bn`), ``soups`` (:func:`model_soup`) and ``barriers``
(:func:`barrier_matrix`).
"""

from .barriers import BarrierMatrix, barrier_matrix
from .bn import reestimate_bn
from .curves import CURVE_KINDS, Connection, Curve, CurveKind, PathResult
from .evaluation import connect_checkpoints, evaluate_path, loss_barrier
from .fitting import fit_curve
from .soups import model_soup

__all__ = [
    "BarrierMatrix",
    "CURVE_KINDS",
    "Connection",
    "Curve",
    "CurveKind",
    "PathResult",
    "barrier_matrix",
    "connect_checkpoints",
    "evaluate_path",
    "fit_curve",
    "loss_barrier",
    "model_soup",
    "reestimate_bn",
]

# names of the single module before 0.3, kept importable from here
from .bn import _BatchNormEstimator, _norm_layers  # noqa: F401, I001
from .curves import State, _as_state, _blend, _check_kind, _point  # noqa: F401
from .evaluation import _grid, _plane_coords, _plane_xy  # noqa: F401
