"""Hessian analysis: Hessian-vector products, eigenpairs, trace, spectral density.

Everything is built on :class:`HessianOperator`, the Hessian of an
:class:`~landscape.objective.Objective`'s exact mean loss (sum of per-batch loss sums divided
by the number of examples, whatever the batch sizes) with respect to the model's weights, at
a fixed point; its products are exact (double backward) or central differences of gradients
with a measured error (``hvp="fd"``, ``products.py``), or Gauss-Newton products
(``operator="ggn"``, ``ggn.py``). It is a symmetric operator for the solvers of
:mod:`landscape.linalg`, which stop on what they promise, never on a relative change of an
estimate:

- :func:`hessian_eigenpairs` (``eigen.py``): thick-restart Lanczos with full reorthogonalization,
  every returned pair verified with float64 Hessian-vector products (``converged`` is a
  float64 residual ``||H v - lambda v|| <= tol * ||H||``); also
  :func:`extreme_eigenvalues`, :func:`min_max_ratio` and :func:`hessian_directions`.
- :func:`hessian_trace` (``trace.py``): Hutchinson or Hutch++ with a fixed number of probes
  and a standard error that covers.
- :func:`spectral_density` (``density.py``): stochastic Lanczos quadrature.
- :class:`ShardedHessianOperator` (``sharded.py``): a model sharded by FSDP2, on each
  rank's local shards (finite differences by the model's own backward; the solvers' dot
  products all-reduced): what ``hvp="fd"`` gives :func:`hessian_eigenpairs` and
  :func:`hessian_trace` for such a model.
- :func:`block_curvature` (``blocks.py``): the top eigenvalue and trace of each diagonal
  block ``H_bb`` (a transformer layer, the embeddings, the head, ...).
- :func:`save_hessian` and :func:`load_hessian` (:mod:`landscape.storage.hessian`): the
  ``/hessian`` groups of a landscape file.

Precision: products are computed in the model's dtype unless ``dtype`` says otherwise, and
eigenpairs are always verified with float64 products (refined in float64 when round-off
keeps them above the tolerance). Computing everything in float64 by default was measured
and rejected: a float64 HVP costs 1.8x a float32 one on a CPU (the digits MLP, 2 threads)
and far more on most GPUs, while verification costs ``k`` float64 HVPs per check; traces
and densities carry a sampling error far above float32 round-off.
"""

from ..storage.hessian import load_hessian, save_hessian
from .blocks import block_curvature, default_blocks
from .density import spectral_density
from .eigen import extreme_eigenvalues, hessian_directions, hessian_eigenpairs, min_max_ratio
from .operator import HessianOperator
from .results import (
    BlockCurvature,
    DensityResult,
    EigenResult,
    ExtremeEigenvalues,
    HessianResults,
    TraceResult,
)
from .sharded import ShardedHessianOperator
from .trace import hessian_trace

__all__ = [
    "HessianOperator",
    "ShardedHessianOperator",
    "EigenResult",
    "ExtremeEigenvalues",
    "TraceResult",
    "DensityResult",
    "HessianResults",
    "BlockCurvature",
    "block_curvature",
    "default_blocks",
    "hessian_eigenpairs",
    "extreme_eigenvalues",
    "min_max_ratio",
    "hessian_directions",
    "hessian_trace",
    "spectral_density",
    "save_hessian",
    "load_hessian",
]
