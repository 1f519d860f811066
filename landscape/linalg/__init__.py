"""Solvers on any symmetric linear operator: Lanczos eigenpairs, trace estimates, quadrature.

An operator is anything with a ``matvec`` (a 1-D tensor of ``dtype`` on ``device`` in, the
product ``A @ x`` of the same kind out), a ``size`` and a ``dtype`` and ``device``: the
:class:`SymmetricOperator` protocol. :func:`dense_operator` wraps a matrix, so every solver
here is tested on plain matrices; :class:`~landscape.hessian.HessianOperator` is another such
operator. An operator may also have a method ``float64()`` returning the same operator
computed in float64 (a matrix cast to float64, the Hessian of a float64 copy of the model):
:func:`lanczos_eigenpairs` verifies what it returns with it. And it may have a ``space``
(see ``landscape.linalg.operators.Whole``, the default): vectors split into pieces over
ranks (a sharded model's Hessian), whose dot products, norms and random draws
:func:`lanczos_eigenpairs` and :func:`estimate_trace` (Hutchinson) route through it; the
other solvers refuse such an operator.

- :func:`lanczos_eigenpairs`: thick-restart Lanczos with full reorthogonalization in a
  bounded basis; every returned pair is checked with explicit products in float64.
- :func:`two_pass_eigenpairs`: two-pass Lanczos in ``k + 3`` vectors (three-term
  recurrence, ghosts told apart by the Cullum-Willoughby test, the basis regenerated to
  form the Ritz vectors), verified the same way.
- :func:`estimate_trace`: Hutchinson or Hutch++ with a standard error that covers.
- :func:`lanczos_quadrature` and :func:`smoothed_density`: stochastic Lanczos quadrature
  (the spectral density of Ghorbani et al. 2019).

Random vectors come from ``seed``: drawn on the CPU in float64 for an operator on the CPU,
on the operator's device for a CUDA one (no copy per draw; the draws differ from the CPU's
for the same seed but are reproducible on the same device). A ``torch.Generator`` passed
as ``seed`` draws on its own device.

Example:
    >>> import torch
    >>> matrix = torch.diag(torch.tensor([3.0, 1.0, 1.0, -2.0], dtype=torch.float64))
    >>> op = dense_operator(matrix)
    >>> lanczos_eigenpairs(op, 2, which="LA").values  # both copies of 1 are found below 3
    array([3., 1.])

Modules: :mod:`~landscape.linalg.operators`, :mod:`~landscape.linalg.lanczos` (with the
private ``_krylov``, the basis and its restarts, and ``_copies``, the final check),
:mod:`~landscape.linalg.two_pass` (with ``_three_term``, the plain recurrence),
:mod:`~landscape.linalg.trace`, :mod:`~landscape.linalg.quadrature`.
"""

from .bounds import eigenpairs_bound, host_basis_bytes
from .lanczos import Eigenpairs, lanczos_eigenpairs
from .lanczos import Which as Which
from .operators import MatvecOperator, SymmetricOperator, dense_operator
from .quadrature import Quadrature, lanczos_quadrature, quadrature_bound, smoothed_density
from .quadrature import SigmaUnits as SigmaUnits
from .trace import TraceEstimate, estimate_trace, trace_bound
from .trace import TraceMethod as TraceMethod
from .two_pass import two_pass_bound, two_pass_eigenpairs

__all__ = [
    "SymmetricOperator",
    "MatvecOperator",
    "dense_operator",
    "Eigenpairs",
    "TraceEstimate",
    "Quadrature",
    "lanczos_eigenpairs",
    "estimate_trace",
    "lanczos_quadrature",
    "smoothed_density",
    "quadrature_bound",
    "two_pass_eigenpairs",
    "two_pass_bound",
    "eigenpairs_bound",
    "host_basis_bytes",
    "trace_bound",
]
