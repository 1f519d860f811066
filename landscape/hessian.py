"""Hessian analysis: exact Hessian-vector products, Lanczos eigenpairs, trace, spectral density.

Everything is built on :class:`HessianOperator`, the Hessian of an :class:`~landscape.evaluate.
Objective`'s exact mean loss (sum of per-batch loss sums divided by the number of examples,
whatever the batch sizes) with respect to the model's weights, at a fixed point. The model is
only ever called through the objective, so its parameters, buffers and train/eval flags are
unchanged, and buffers (BatchNorm running statistics) are held fixed.

The algorithms stop on what they promise, never on a relative change of an estimate:

- :func:`hessian_eigenpairs`: Lanczos with full reorthogonalization; it stops once every wanted
  Ritz pair has a residual ``||H v - lambda v|| <= tol * ||H||`` (``||H||`` estimated by the
  largest Ritz value in magnitude), and the residuals are then recomputed with explicit HVPs.
- :func:`hessian_trace`: Hutchinson or Hutch++ with a fixed number of probes and a standard error.
- :func:`spectral_density`: stochastic Lanczos quadrature with a fixed number of probes and steps.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.linalg
import scipy.sparse.linalg
import torch

from .evaluate import Objective
from .params import flatten, select_names, state_sha256, unflatten
from .storage import read_group, write_group

Which = Literal["LA", "SA", "LM", "BE"]
TraceMethod = Literal["hutchinson", "hutch++"]
SigmaUnits = Literal["width", "absolute"]
ParamSelection = Callable[[str, torch.Tensor], bool] | Iterable[str] | None

__all__ = [
    "HessianOperator",
    "EigenResult",
    "ExtremeEigenvalues",
    "TraceResult",
    "DensityResult",
    "HessianResults",
    "hessian_eigenpairs",
    "extreme_eigenvalues",
    "min_max_ratio",
    "hessian_directions",
    "hessian_trace",
    "spectral_density",
    "save_hessian",
    "load_hessian",
]


def _cast(obj: Any, dtype: torch.dtype) -> Any:
    """``obj`` with every floating tensor (also inside dicts, lists, tuples) cast to ``dtype``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(dtype) if obj.is_floating_point() else obj
    if isinstance(obj, Mapping):
        return {k: _cast(v, dtype) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cast(v, dtype) for v in obj)
    return obj


# ---------------------------------------------------------------- the operator
class HessianOperator:
    """The Hessian of an objective's exact mean loss with respect to the model's weights.

    ``H @ v`` is an exact Hessian-vector product (double backward) over the whole evaluation
    set: each batch contributes the HVP of its loss *sum*, and the total is divided by the
    number of examples, so ragged batches weigh what they should. When the data is one cached
    batch, the gradient graph is built once and each product is a single backward pass (memory
    does not grow with the number of products). With an objective that shards its data over
    ``torch.distributed`` ranks, products and counts are all-reduced: every rank makes the
    same calls and gets the same results.

    Args:
        objective: the loss and data; its model is never changed.
        state: the point, a (partial) state with names from ``model.state_dict()``; default
            the objective's base state (the model's own).
        params: which weights to differentiate: ``None`` (all of ``model.named_parameters()``),
            a collection of names, or a predicate ``(name, tensor) -> bool`` such as
            ``lambda n, t: t.dim() > 1`` (Li et al.'s choice). The others are held fixed.
        dtype: compute in this floating dtype (e.g. ``torch.float64``) on copies of the state
            and data; default the model's dtype.
        check_deterministic: evaluate the loss twice at construction and refuse an objective
            whose two values differ (Dropout in train mode, random augmentation), as an HVP of
            a random function is meaningless.

    Attributes:
        names, shapes, num_params: the differentiated weights (flat vectors follow ``names``).
        num_examples, loss: size of the evaluation set, and the mean loss at the point.
        num_hvps: products computed so far.
        device, dtype, settings: where and how it computes; ``settings`` (dtype, loss, the
            point's fingerprint ``state_sha256``, ...) is copied into every result.

    Raises:
        ValueError: a selected name is not a weight, or no weight is selected.
        RuntimeError: the loss is not deterministic.

    Example:
        >>> from torch import nn
        >>> from landscape.evaluate import Objective
        >>> data = (torch.randn(8, 3, dtype=torch.float64), torch.randn(8, dtype=torch.float64))
        >>> H = HessianOperator(Objective(nn.Linear(3, 1).double(), data, loss="mse"))
        >>> H.num_params, (H @ torch.ones(4, dtype=torch.float64)).shape
        (4, torch.Size([4]))
    """

    def __init__(
        self,
        objective: Objective,
        *,
        state: Mapping[str, torch.Tensor] | None = None,
        params: ParamSelection = None,
        dtype: torch.dtype | None = None,
        check_deterministic: bool = True,
    ):
        if not isinstance(objective, Objective):
            raise TypeError(
                f"objective must be a landscape Objective, got {type(objective).__name__}"
            )
        self.objective = objective
        self.device = objective.device
        self.dtype = objective.dtype if dtype is None else dtype
        if not self.dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating dtype, got {self.dtype}")
        point = {n: _cast(t, self.dtype) for n, t in objective.full_state(state).items()}
        weights = {n: point[n] for n, _ in objective.model.named_parameters()}
        try:
            self.names: tuple[str, ...] = tuple(select_names(weights, params))
        except ValueError as err:
            raise ValueError(
                f"{err}; only weights (model.named_parameters()) can be selected"
            ) from None
        if not self.names:
            raise ValueError("params selected no weight; expected at least one floating parameter")
        self._leaves = [point[n].detach().clone().requires_grad_(True) for n in self.names]
        self._point = point
        self.shapes: dict[str, tuple[int, ...]] = {n: tuple(point[n].shape) for n in self.names}
        self._weights = dict(zip(self.names, self._leaves, strict=True))
        self.num_params = sum(t.numel() for t in self._leaves)
        self.num_hvps = 0
        cast = self.dtype != objective.dtype
        self._data = None
        if objective.cache_data:
            self._data = [_cast(b, self.dtype) if cast else b for b in objective.batches()]
        self._graph: tuple[torch.Tensor, ...] | None = None
        sums, self.num_examples = self._loss_sums()
        if check_deterministic and not np.array_equal(sums, self._loss_sums()[0], equal_nan=True):
            raise RuntimeError(
                "the loss is not deterministic: two evaluations at the same point differ, so its "
                "Hessian is undefined; evaluate in eval mode (Objective(..., train_mode=False)) "
                "or remove the randomness (Dropout in train mode, random augmentation), or pass "
                "check_deterministic=False if the difference is harmless round-off"
            )
        local = torch.tensor(sums.sum(), dtype=torch.float64, device=self.device)
        self.loss = float(self.objective.all_reduce(local)) / self.num_examples
        self.settings: dict[str, Any] = {
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            "num_params": self.num_params,
            "num_examples": self.num_examples,
            "loss_name": objective.loss_name,
            "train_mode": objective.train_mode,
            "state_sha256": state_sha256(self._weights),
        }

    # -- data and state
    def _batches(self) -> Iterator[Any]:
        if self._data is not None:
            yield from self._data
            return
        for batch in self.objective.batches():
            yield _cast(batch, self.dtype)

    def _state(self) -> dict[str, torch.Tensor]:
        return self.objective.full_state({**self._point, **self._weights})  # fresh buffer copies

    @torch.no_grad()
    def _loss_sums(self) -> tuple[np.ndarray, int]:
        """Per-batch loss sums at the point (this rank's batches when the objective shards its
        data), and the number of examples (all ranks)."""
        sums, local = [], 0
        for batch in self._batches():
            loss, count = self.objective.batch_sums(self._state(), batch, with_metrics=False)
            sums.append(float(loss["loss"]))
            local += count
        count = torch.tensor(float(local), dtype=torch.float64, device=self.device)
        total = int(self.objective.all_reduce(count).item())
        if total == 0:
            raise ValueError("data is empty: expected at least one example")
        return np.asarray(sums), total

    # -- products
    def _batch_grad(self, batch: Any, scale: float) -> tuple[torch.Tensor, ...]:
        sums, _ = self.objective.batch_sums(self._state(), batch, with_metrics=False)
        return torch.autograd.grad(
            sums["loss"] * scale,
            self._leaves,
            create_graph=True,
            allow_unused=True,
            materialize_grads=True,
        )

    def _backward(
        self, grads: Sequence[torch.Tensor], parts: Sequence[torch.Tensor], *, retain: bool
    ) -> list[torch.Tensor]:
        live = [i for i, g in enumerate(grads) if g.requires_grad]
        if not live:  # the loss is at most linear in these weights
            return [torch.zeros_like(t) for t in self._leaves]
        hv = torch.autograd.grad(
            [grads[i] for i in live],
            self._leaves,
            grad_outputs=[parts[i] for i in live],
            retain_graph=retain,
            allow_unused=True,
            materialize_grads=True,
        )
        return list(hv)

    def _hvp(self, vector: torch.Tensor) -> torch.Tensor:
        """``H @ vector`` for a flat vector in the operator's dtype, on its device; float64 out
        (batches are accumulated in float64, like the objective's values)."""
        parts = list(unflatten(vector, self._weights, self.names).values())
        scale = 1.0 / self.num_examples
        if self._data is not None and len(self._data) == 1:
            if self._graph is None:
                self._graph = self._batch_grad(self._data[0], scale)
            total = torch.cat(
                [t.reshape(-1) for t in self._backward(self._graph, parts, retain=True)]
            )
        else:
            total = torch.zeros(self.num_params, dtype=torch.float64, device=self.device)
            for batch in self._batches():
                hv = self._backward(self._batch_grad(batch, scale), parts, retain=False)
                total += torch.cat([t.reshape(-1) for t in hv])
        self.num_hvps += 1
        return self.objective.all_reduce(total.detach().to(torch.float64))

    def matvec(self, v: torch.Tensor | Mapping[str, torch.Tensor]):
        """``H @ v`` for a flat vector (length :attr:`num_params`, order :attr:`names`) or a
        mapping ``{name: tensor}`` with exactly the operator's names.

        Returns:
            the same kind as ``v``, with its dtype and device.

        Raises:
            ValueError: wrong length or names.
            TypeError: ``v`` is neither a tensor nor a mapping.
        """
        if isinstance(v, torch.Tensor):
            if v.numel() != self.num_params:
                raise ValueError(f"expected a vector of {self.num_params} entries, got {v.numel()}")
            out = self._hvp(v.reshape(-1).to(self.device, self.dtype))
            return out.to(v.device, v.dtype).reshape(v.shape)
        if isinstance(v, Mapping):
            if set(v) != set(self.names):
                raise ValueError(
                    f"expected a mapping with the operator's names {list(self.names)[:5]}..., "
                    f"got names {sorted(v)[:5]}...; missing {sorted(set(self.names) - set(v))[:5]}"
                )
            flat = flatten({n: v[n].to(self.device, self.dtype) for n in self.names}, self.names)
            out = unflatten(self._hvp(flat), self._weights, self.names)
            return {n: out[n].to(v[n].device, v[n].dtype) for n in self.names}
        raise TypeError(f"v must be a tensor or a mapping of tensors, got {type(v).__name__}")

    __matmul__ = matvec

    def to_scipy(self) -> scipy.sparse.linalg.LinearOperator:
        """The operator as a scipy ``LinearOperator`` (float64 numpy vectors in and out)."""

        def apply(x: np.ndarray) -> np.ndarray:
            vector = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64).reshape(-1))
            return self.matvec(vector).numpy()

        n = self.num_params
        return scipy.sparse.linalg.LinearOperator(
            (n, n), matvec=apply, rmatvec=apply, dtype=np.float64
        )

    def _matvec64(self, v: torch.Tensor) -> torch.Tensor:
        return self._hvp(v.to(self.dtype))


def _operator(
    source: Objective | HessianOperator,
    state: Mapping[str, torch.Tensor] | None,
    params: ParamSelection,
    dtype: torch.dtype | None,
) -> HessianOperator:
    if isinstance(source, HessianOperator):
        if state is not None or params is not None or dtype is not None:
            raise ValueError(
                "state, params and dtype are fixed when a HessianOperator is built; give them to "
                "HessianOperator(...) or pass the Objective instead"
            )
        return source
    if isinstance(source, Objective):
        return HessianOperator(source, state=state, params=params, dtype=dtype)
    raise TypeError(f"expected an Objective or a HessianOperator, got {type(source).__name__}")


def _rademacher(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """A float64 vector of random signs, drawn on the CPU so a seed gives the same on any device."""
    return (torch.randint(0, 2, (n,), generator=generator, dtype=torch.float64) * 2 - 1).to(device)


# ---------------------------------------------------------------- Lanczos
_BLOCK = 32  # basis rows are stored in blocks, so memory grows with the steps actually taken


class _Lanczos:
    """Lanczos with full reorthogonalization (classical Gram-Schmidt, twice).

    After ``m`` steps ``H V_m = V_m T_m + beta_m v_{m+1} e_m^T`` with orthonormal rows ``V_m``
    and the tridiagonal ``T_m`` given by :attr:`alphas` and :attr:`betas`. On an invariant
    subspace (``beta`` ~ 0) it restarts from a fresh random vector when it has a generator
    (``beta`` is recorded as 0, so ``T`` is block diagonal), and stops otherwise.
    """

    def __init__(self, matvec, start: torch.Tensor, *, generator: torch.Generator | None = None):
        self._matvec = matvec
        self._generator = generator
        self.n = start.numel()
        self._blocks: list[torch.Tensor] = []
        self.size = 0
        self.alphas: list[float] = []
        self.betas: list[float] = []
        self.finite = True
        self._append(start / start.norm())

    @property
    def steps(self) -> int:
        return len(self.alphas)

    def _append(self, v: torch.Tensor) -> None:
        if self.size % _BLOCK == 0:
            self._blocks.append(v.new_empty(_BLOCK, self.n))
        self._blocks[-1][self.size % _BLOCK] = v
        self.size += 1

    def _rows(self, count: int) -> Iterator[tuple[int, torch.Tensor]]:
        for i, block in enumerate(self._blocks):
            start = i * _BLOCK
            if start >= count:
                return
            yield start, block[: min(_BLOCK, count - start)]

    def _orthogonalize(self, w: torch.Tensor) -> torch.Tensor:
        for _ in range(2):
            for _, rows in self._rows(self.size):
                w = w - rows.T @ (rows @ w)
        return w

    def step(self) -> bool:
        """One step; False once nothing more can be added (invariant, full, or non-finite)."""
        v = self._blocks[self.steps // _BLOCK][self.steps % _BLOCK]
        hv = self._matvec(v)
        alpha = float(v @ hv)
        w = self._orthogonalize(hv)
        beta = float(w.norm())
        self.alphas.append(alpha)
        if not (math.isfinite(alpha) and math.isfinite(beta)):
            self.finite = False
            self.betas.append(math.nan)
            return False
        if beta > 1e-10 * float(hv.norm()):
            self.betas.append(beta)
            self._append(w / beta)
            return True
        self.betas.append(0.0)
        if self._generator is None or self.size == self.n:
            return False
        w = self._orthogonalize(torch.randn(self.n, generator=self._generator, dtype=w.dtype).to(w))
        if float(w.norm()) <= 1e-8:
            return False
        self._append(w / w.norm())
        return True

    def ritz(self) -> tuple[np.ndarray, np.ndarray]:
        """Ritz values (ascending) and the eigenvectors of ``T`` as columns."""
        return scipy.linalg.eigh_tridiagonal(np.asarray(self.alphas), np.asarray(self.betas[:-1]))

    def combine(self, coefficients: np.ndarray) -> torch.Tensor:
        """Rows ``coefficients[:, i]^T V``: the Ritz vectors for the given columns of ``S``."""
        coef = torch.as_tensor(coefficients.T, dtype=torch.float64, device=self._blocks[0].device)
        out = coef.new_zeros(coef.shape[0], self.n)
        for start, rows in self._rows(self.steps):
            out += coef[:, start : start + len(rows)] @ rows
        return out


def _wanted(theta: np.ndarray, k: int, which: str) -> np.ndarray:
    """Indices of the wanted Ritz values (``theta`` ascending), in the order results use."""
    m = len(theta)
    if which == "LA":
        return np.arange(m - 1, m - k - 1, -1)
    if which == "SA":
        return np.arange(k)
    if which == "LM":
        return np.argsort(-np.abs(theta), kind="stable")[:k]
    low = k // 2
    return np.concatenate([np.arange(m - 1, m - (k - low) - 1, -1), np.arange(low - 1, -1, -1)])


# ---------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class EigenResult:
    """Eigenpairs of the Hessian.

    Attributes:
        eigenvalues: shape ``(k,)``: descending for "LA", "BE" (largest first, then the
            smallest), ascending for "SA", by descending magnitude for "LM".
        eigenvectors: float64 array ``(k, n)``, unit rows in the order of :attr:`names`; the
            sign is fixed so that each row's largest-magnitude entry is positive.
        residuals: ``||H v_i - lambda_i v_i||`` recomputed with explicit HVPs after the solve.
        num_hvps: Hessian-vector products spent, residual checks included.
        converged: every residual is at most ``tol * ||H||`` (see :func:`hessian_eigenpairs`).
        names: the differentiated weights; shapes: their shapes.
        settings: every option and the operator's settings (dtype, point fingerprint, ...).
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    residuals: np.ndarray
    num_hvps: int
    converged: bool
    names: tuple[str, ...]
    shapes: dict[str, tuple[int, ...]]
    settings: dict[str, Any] = field(default_factory=dict)

    def as_state(self, i: int) -> dict[str, torch.Tensor]:
        """Eigenvector ``i`` as a state ``{name: float64 CPU tensor}`` shaped like the weights."""
        like = {n: torch.empty(s) for n, s in self.shapes.items()}
        return unflatten(torch.from_numpy(self.eigenvectors[i].copy()), like, self.names)

    def as_states(self) -> list[dict[str, torch.Tensor]]:
        """Every eigenvector as a state (see :meth:`as_state`)."""
        return [self.as_state(i) for i in range(len(self.eigenvalues))]


@dataclass(frozen=True, eq=False)
class ExtremeEigenvalues:
    """The largest and smallest Hessian eigenvalues, and Li et al.'s convexity measure.

    Attributes:
        lambda_max, lambda_min: the extreme eigenvalues.
        ratio: ``|lambda_min / lambda_max|`` (NaN if ``lambda_max`` is 0).
        residuals: explicit residual norms of the two eigenpairs, ``(max, min)``.
        num_hvps, converged, settings: as in :class:`EigenResult`.
    """

    lambda_max: float
    lambda_min: float
    ratio: float
    residuals: np.ndarray
    num_hvps: int
    converged: bool
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class TraceResult:
    """A stochastic estimate of the Hessian trace.

    Attributes:
        value: the estimate, ``samples.mean()``.
        stderr: its standard error, ``samples.std(ddof=1) / sqrt(len(samples))``.
        num_hvps: Hessian-vector products spent.
        method: "hutchinson" or "hutch++".
        samples: for Hutchinson, ``z^T H z`` per probe; for Hutch++, the exact trace on the
            sketched subspace plus ``g^T P H P g`` per residual probe (``P`` projects out the
            sketch), so that the mean is the Hutch++ estimate.
        settings: every option and the operator's settings.
    """

    value: float
    stderr: float
    num_hvps: int
    method: str
    samples: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class DensityResult:
    """A smoothed spectral density from stochastic Lanczos quadrature.

    Attributes:
        grid: eigenvalue axis, shape ``(num_grid,)``.
        density: the density on ``grid``; it integrates to about 1.
        nodes: Ritz values, ``(num_probes, num_steps)``; NaN where a probe's Krylov space was
            exhausted early.
        weights: quadrature weights for ``nodes`` (0 where NaN); each row sums to 1.
        num_hvps: Hessian-vector products spent.
        settings: every option (``sigma_abs`` is the Gaussian width used) and the operator's.
    """

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    num_hvps: int
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class HessianResults:
    """What :func:`load_hessian` found in a file (``None`` for a result not stored)."""

    eigen: EigenResult | None = None
    trace: TraceResult | None = None
    density: DensityResult | None = None
    extremes: ExtremeEigenvalues | None = None


# ---------------------------------------------------------------- eigenpairs
def hessian_eigenpairs(
    objective: Objective | HessianOperator,
    *,
    k: int = 5,
    which: Which = "LA",
    tol: float | None = None,
    max_hvps: int = 500,
    seed: int = 0,
    state: Mapping[str, torch.Tensor] | None = None,
    params: ParamSelection = None,
    dtype: torch.dtype | None = None,
) -> EigenResult:
    """``k`` eigenpairs of the Hessian by Lanczos with full reorthogonalization.

    The Krylov space grows one HVP at a time until every wanted Ritz pair has a residual
    ``||H v - lambda v|| <= tol * ||H||`` (``||H||`` estimated by the largest Ritz value in
    magnitude; the estimate from the Lanczos relation is then confirmed with ``k`` explicit
    HVPs). An eigenvalue is then off by at most ``tol * ||H||``, and by about
    ``(tol * ||H||)**2 / gap`` when it is separated from the rest of the spectrum by ``gap``.
    Like every single-vector Krylov method it finds one vector per distinct eigenvalue. The
    basis is kept on the device in float64: ``8 * n`` bytes per HVP.

    Args:
        objective: an Objective, or a HessianOperator (then ``state``, ``params`` and
            ``dtype`` must be left out).
        k: number of eigenpairs.
        which: "LA" largest algebraic, "SA" smallest algebraic, "LM" largest magnitude,
            "BE" both ends (``k // 2`` smallest and the rest largest).
        tol: residual tolerance relative to ``||H||``; default 1e-8 in float64 and 1e-4 in
            lower precision (round-off in a float32 HVP is about 1e-7 of ``||H||``).
        max_hvps: budget of HVPs, residual checks included; on running out a
            ``RuntimeWarning`` is issued and the result has ``converged=False``.
        seed: seed of the random start vector.
        state, params, dtype: as in :class:`HessianOperator`.

    Returns:
        an :class:`EigenResult`. If an HVP is not finite (a point where the loss overflows),
        eigenvalues, vectors and residuals are NaN.

    Raises:
        ValueError: ``k`` not in ``1..n``, ``max_hvps < 2 k``, ``tol`` negative, bad ``which``.

    Example:
        >>> from torch import nn
        >>> from landscape.evaluate import Objective
        >>> x = torch.randn(20, 3, dtype=torch.float64)
        >>> objective = Objective(nn.Linear(3, 1).double(), (x, x.sum(1)), loss="mse")
        >>> result = hessian_eigenpairs(objective, k=2)
        >>> result.converged, result.eigenvectors.shape
        (True, (2, 4))
    """
    op = _operator(objective, state, params, dtype)
    n = op.num_params
    if which not in ("LA", "SA", "LM", "BE"):
        raise ValueError(f"which must be 'LA', 'SA', 'LM' or 'BE', got {which!r}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the number of parameters {n}, got {k}")
    if max_hvps < 2 * k:
        raise ValueError(f"max_hvps must be at least 2 * k = {2 * k}, got {max_hvps}")
    if tol is None:
        tol = 1e-8 if op.dtype == torch.float64 else 1e-4
    if tol < 0:
        raise ValueError(f"tol must be non-negative, got {tol}")
    settings = {
        **op.settings,
        "k": k,
        "which": which,
        "tol": tol,
        "max_hvps": max_hvps,
        "seed": seed,
    }
    first = op.num_hvps
    values, vectors, residuals, bound = _lanczos_eigenpairs(op, k, which, tol, max_hvps, seed)
    converged = bool((residuals <= bound).all())
    if np.isnan(values).any():
        warnings.warn(
            "a Hessian-vector product is not finite; returning NaN", RuntimeWarning, stacklevel=2
        )
    elif not converged:
        warnings.warn(
            f"Lanczos stopped after {op.num_hvps - first} HVPs with residuals up to "
            f"{residuals.max():.3g}, above tol * ||H|| = {bound:.3g}; raise max_hvps, or tol, "
            "or compute in float64 (dtype=torch.float64)",
            RuntimeWarning,
            stacklevel=2,
        )
    signs = np.sign(vectors[np.arange(k), np.abs(vectors).argmax(axis=1)])
    return EigenResult(
        eigenvalues=values,
        eigenvectors=vectors * signs[:, None],
        residuals=residuals,
        num_hvps=op.num_hvps - first,
        converged=converged,
        names=op.names,
        shapes=dict(op.shapes),
        settings=settings,
    )


def _lanczos_eigenpairs(
    op: HessianOperator, k: int, which: str, tol: float, max_hvps: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Eigenvalues, eigenvectors ``(k, n)``, explicit residuals and the bound ``tol * ||H||``;
    all NaN if an HVP is not finite."""
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(op.num_params, generator=generator, dtype=torch.float64)
    lanczos = _Lanczos(op._matvec64, start.to(op.device), generator=generator)
    budget = max_hvps  # every check of k residuals must leave room for one more step
    next_check = k
    while True:
        more = lanczos.step()
        budget -= 1
        if not lanczos.finite:
            nan = np.full(k, np.nan)
            return nan, np.full((k, op.num_params), np.nan), nan, math.nan
        if more and budget > k and lanczos.steps < next_check:
            continue
        theta, coefficients = lanczos.ritz()
        idx = _wanted(theta, k, which)
        bound = tol * float(np.abs(theta).max())
        estimates = np.abs(lanczos.betas[-1] * coefficients[-1, idx])
        if more and budget > k and estimates.max() > bound:
            continue
        vectors = lanczos.combine(coefficients[:, idx])
        products = torch.stack([op._matvec64(v) for v in vectors])
        budget -= k
        shifted = products - torch.as_tensor(theta[idx]).to(vectors)[:, None] * vectors
        residuals = shifted.norm(dim=1).cpu().numpy()
        if (residuals <= bound).all() or not more or budget <= k:
            return theta[idx].copy(), vectors.cpu().numpy(), residuals, bound
        next_check = lanczos.steps + k


def extreme_eigenvalues(
    objective: Objective | HessianOperator,
    *,
    tol: float | None = None,
    max_hvps: int = 500,
    seed: int = 0,
    state: Mapping[str, torch.Tensor] | None = None,
    params: ParamSelection = None,
    dtype: torch.dtype | None = None,
) -> ExtremeEigenvalues:
    """The largest and smallest Hessian eigenvalues from one Lanczos run (both ends converge
    together), and the ratio ``|lambda_min / lambda_max|`` of Li et al. (2018).

    Args:
        objective, tol, max_hvps, seed, state, params, dtype: as in :func:`hessian_eigenpairs`.

    Returns:
        an :class:`ExtremeEigenvalues`.

    Example:
        >>> from torch import nn
        >>> from landscape.evaluate import Objective
        >>> x = torch.randn(20, 3, dtype=torch.float64)
        >>> objective = Objective(nn.Linear(3, 1).double(), (x, x.sum(1)), loss="mse")
        >>> extreme_eigenvalues(objective).lambda_min > 0  # least squares is convex
        True
    """
    eigen = hessian_eigenpairs(
        objective,
        k=2,
        which="BE",
        tol=tol,
        max_hvps=max_hvps,
        seed=seed,
        state=state,
        params=params,
        dtype=dtype,
    )
    top, bottom = (float(v) for v in eigen.eigenvalues)
    return ExtremeEigenvalues(
        lambda_max=top,
        lambda_min=bottom,
        ratio=abs(bottom / top) if top != 0 else math.nan,
        residuals=eigen.residuals,
        num_hvps=eigen.num_hvps,
        converged=eigen.converged,
        settings=eigen.settings,
    )


def min_max_ratio(
    objective: Objective,
    state: Mapping[str, torch.Tensor] | None = None,
    *,
    params: ParamSelection = None,
    dtype: torch.dtype | None = None,
    tol: float = 1e-3,
    max_hvps: int = 200,
    seed: int = 0,
) -> float:
    """Li et al.'s convexity measure ``|lambda_min / lambda_max|`` at one point, cheaply.

    Meant to be called at every point of a surface, so the defaults are modest: with
    ``tol=1e-3`` each eigenvalue is within ``1e-3 * ||H||`` (far closer when it is isolated),
    so the ratio is within about ``1e-3`` *absolute*; for ratios below about ``10 * tol`` (a
    nearly convex point) pass a smaller ``tol``. NaN where an HVP is not finite.

    Args:
        objective: the loss and data.
        state: the point (default the model's own).
        params, dtype: as in :class:`HessianOperator`.
        tol, max_hvps, seed: as in :func:`hessian_eigenpairs`.

    Returns:
        the ratio, a float.
    """
    return extreme_eigenvalues(
        objective, tol=tol, max_hvps=max_hvps, seed=seed, state=state, params=params, dtype=dtype
    ).ratio


def hessian_directions(
    objective: Objective | HessianOperator,
    *,
    state: Mapping[str, torch.Tensor] | None = None,
    params: ParamSelection = None,
    dtype: torch.dtype | None = None,
    tol: float | None = None,
    max_hvps: int = 500,
    seed: int = 0,
) -> list[dict[str, torch.Tensor]]:
    """The top two Hessian eigenvectors as two direction states (``--directions hessian``).

    Args:
        objective, state, params, dtype, tol, max_hvps, seed: as in :func:`hessian_eigenpairs`.

    Returns:
        ``[d_x, d_y]``, each ``{name: float64 CPU tensor}`` over the differentiated weights,
        unit norm together, orthogonal to each other.
    """
    eigen = hessian_eigenpairs(
        objective,
        k=2,
        which="LA",
        tol=tol,
        max_hvps=max_hvps,
        seed=seed,
        state=state,
        params=params,
        dtype=dtype,
    )
    return eigen.as_states()


# ---------------------------------------------------------------- trace
def hessian_trace(
    objective: Objective | HessianOperator,
    *,
    num_probes: int = 99,
    method: TraceMethod = "hutch++",
    seed: int = 0,
    state: Mapping[str, torch.Tensor] | None = None,
    params: ParamSelection = None,
    dtype: torch.dtype | None = None,
) -> TraceResult:
    """Trace of the Hessian with a fixed number of random-sign probes and a standard error.

    "hutchinson" averages ``z^T H z``. "hutch++" (Meyer et al., 2021) spends a third of the
    probes on a sketch ``Q = orth(H S)``, a third on ``tr(Q^T H Q)`` (exact), and the rest on
    Hutchinson for the deflated rest ``P H P``; its standard error is that of the Hutchinson
    part, the only random term given ``Q``. Hutch++ is far more accurate when the spectrum
    decays (a few large eigenvalues), and exact once the sketch covers all ``n`` dimensions
    (``num_probes >= 3 n``).

    Args:
        objective: an Objective or a HessianOperator.
        num_probes: HVP budget (Hutch++ uses fewer if its sketch would exceed ``n``).
        method: "hutch++" or "hutchinson".
        seed: seed of the probes.
        state, params, dtype: as in :class:`HessianOperator`.

    Returns:
        a :class:`TraceResult`.

    Raises:
        ValueError: unknown method, or too few probes (2 for Hutchinson, 4 for Hutch++:
            a standard error needs two residual probes).

    Example:
        >>> from torch import nn
        >>> from landscape.evaluate import Objective
        >>> x = torch.randn(20, 3, dtype=torch.float64)
        >>> objective = Objective(nn.Linear(3, 1).double(), (x, x.sum(1)), loss="mse")
        >>> exact = 2 * (x.pow(2).sum() / 20 + 1)
        >>> abs(hessian_trace(objective, num_probes=12).value - float(exact)) < 1e-10
        True
    """
    op = _operator(objective, state, params, dtype)
    n, first = op.num_params, op.num_hvps
    generator = torch.Generator().manual_seed(seed)
    if method == "hutchinson":
        if num_probes < 2:
            raise ValueError(f"hutchinson needs num_probes >= 2 for an error bar, got {num_probes}")
        probes = [_rademacher(n, generator, op.device) for _ in range(num_probes)]
        samples = np.array([float(z @ op._matvec64(z)) for z in probes])
    elif method == "hutch++":
        if num_probes < 4:
            raise ValueError(f"hutch++ needs num_probes >= 4, got {num_probes}")
        num_sketch = min(num_probes // 3, n)
        num_rest = num_probes - 2 * (num_probes // 3)
        sketch = torch.stack(
            [op._matvec64(_rademacher(n, generator, op.device)) for _ in range(num_sketch)]
        )
        basis = torch.linalg.qr(sketch.T).Q.T  # rows: an orthonormal basis of range(H S)
        exact = sum(float(q @ op._matvec64(q)) for q in basis)
        if len(basis) == n:  # the sketch is the whole space: the trace is exact
            samples = np.full(num_rest, exact)
        else:
            rest = []
            for _ in range(num_rest):
                g = _rademacher(n, generator, op.device)
                g = g - basis.T @ (basis @ g)
                rest.append(float(g @ op._matvec64(g)))
            samples = exact + np.array(rest)
    else:
        raise ValueError(f"method must be 'hutchinson' or 'hutch++', got {method!r}")
    return TraceResult(
        value=float(samples.mean()),
        stderr=float(samples.std(ddof=1) / math.sqrt(len(samples))),
        num_hvps=op.num_hvps - first,
        method=method,
        samples=samples,
        settings={**op.settings, "num_probes": num_probes, "seed": seed},
    )


# ---------------------------------------------------------------- spectral density
def spectral_density(
    objective: Objective | HessianOperator,
    *,
    num_probes: int = 10,
    num_steps: int = 80,
    sigma: float = 0.01,
    sigma_units: SigmaUnits = "width",
    num_grid: int = 1000,
    seed: int = 0,
    state: Mapping[str, torch.Tensor] | None = None,
    params: ParamSelection = None,
    dtype: torch.dtype | None = None,
) -> DensityResult:
    """Eigenvalue density of the Hessian by stochastic Lanczos quadrature (Ghorbani et al.).

    Each probe (random signs, unit norm) runs ``num_steps`` Lanczos steps with full
    reorthogonalization; the Ritz values ``theta_i`` and squared first components ``w_i`` of
    ``T``'s eigenvectors are a quadrature rule for that probe's spectral measure. The density
    is their average over probes, each node broadened by a Gaussian of width ``sigma``:
    ``rho(t) = mean_p sum_i w_pi N(t; theta_pi, sigma^2)``. Its mean ``integral t rho(t) dt``
    is a Hutchinson estimate of ``trace / n``.

    Args:
        objective: an Objective or a HessianOperator.
        num_probes: number of random probes (``num_probes * num_steps`` HVPs).
        num_steps: Lanczos steps per probe (fewer if a Krylov space is exhausted).
        sigma: Gaussian width: a fraction of the spectrum's width ``max(nodes) - min(nodes)``
            for ``sigma_units="width"``, in eigenvalue units for ``"absolute"``.
        num_grid: number of grid points; the grid spans the nodes plus ``5 sigma`` on each
            side, so the density integrates to 1 as long as the spacing is well below sigma.
        seed: seed of the probes.
        state, params, dtype: as in :class:`HessianOperator`.

    Returns:
        a :class:`DensityResult`.

    Raises:
        ValueError: a non-positive count or sigma, or unknown ``sigma_units``.
    """
    if num_probes < 1 or num_steps < 1 or num_grid < 2:
        raise ValueError(
            f"num_probes and num_steps must be >= 1 and num_grid >= 2, got {num_probes}, "
            f"{num_steps} and {num_grid}"
        )
    if sigma <= 0 or sigma_units not in ("width", "absolute"):
        raise ValueError(
            f"sigma must be > 0 with sigma_units 'width' or 'absolute', got {sigma} {sigma_units!r}"
        )
    op = _operator(objective, state, params, dtype)
    n, first = op.num_params, op.num_hvps
    settings = {
        **op.settings,
        "num_probes": num_probes,
        "num_steps": num_steps,
        "sigma": sigma,
        "sigma_units": sigma_units,
        "num_grid": num_grid,
        "seed": seed,
        "sigma_abs": math.nan,
    }
    generator = torch.Generator().manual_seed(seed)
    nodes = np.full((num_probes, num_steps), np.nan)
    weights = np.zeros((num_probes, num_steps))
    for p in range(num_probes):
        lanczos = _Lanczos(op._matvec64, _rademacher(n, generator, op.device))
        while lanczos.steps < num_steps and lanczos.step():
            pass
        if not lanczos.finite:
            warnings.warn(
                "a Hessian-vector product is not finite; the density is NaN",
                RuntimeWarning,
                stacklevel=2,
            )
            nan = np.full(num_grid, np.nan)
            return DensityResult(nan, nan, nodes, weights, op.num_hvps - first, settings)
        theta, vectors = lanczos.ritz()
        nodes[p, : len(theta)] = theta
        weights[p, : len(theta)] = vectors[0] ** 2
    low, high = np.nanmin(nodes), np.nanmax(nodes)
    width = high - low if high > low else max(abs(high), 1.0)
    sigma_abs = sigma * width if sigma_units == "width" else sigma
    grid = np.linspace(low - 5 * sigma_abs, high + 5 * sigma_abs, num_grid)
    found = ~np.isnan(nodes)
    gauss = np.exp(-0.5 * ((grid[:, None] - nodes[found][None, :]) / sigma_abs) ** 2)
    density = gauss @ weights[found] / (num_probes * sigma_abs * math.sqrt(2 * math.pi))
    settings["sigma_abs"] = sigma_abs
    return DensityResult(grid, density, nodes, weights, op.num_hvps - first, settings)


# ---------------------------------------------------------------- storage
_EIGEN, _TRACE, _DENSITY = "hessian/eigen", "hessian/trace", "hessian/density"
_EXTREMES = "hessian/extremes"


def save_hessian(
    path: str | os.PathLike,
    *,
    eigen: EigenResult | None = None,
    trace: TraceResult | None = None,
    density: DensityResult | None = None,
    extremes: ExtremeEigenvalues | None = None,
    overwrite: bool = False,
) -> None:
    """Store Hessian results in a landscape HDF5 file (created if needed) under ``/hessian``.

    Layout: ``/hessian/eigen`` (datasets ``eigenvalues``, ``eigenvectors``, ``residuals``),
    ``/hessian/trace`` (dataset ``samples``; attrs ``value``, ``stderr``, ``method``),
    ``/hessian/density`` (datasets ``grid``, ``density``, ``nodes``, ``weights``),
    ``/hessian/extremes`` (attrs ``lambda_max``, ``lambda_min``, ``ratio``); every group's
    attrs also hold ``num_hvps`` and every setting (``eigen`` also ``converged``, and ``names``
    and ``shapes`` as JSON).

    Raises:
        ValueError: nothing to save, a group exists and ``overwrite`` is false, or the file is
            not a landscape file.
    """
    if eigen is None and trace is None and density is None and extremes is None:
        raise ValueError("nothing to save: give eigen=, trace=, density= or extremes=")
    if eigen is not None:
        arrays = {k: getattr(eigen, k) for k in ("eigenvalues", "eigenvectors", "residuals")}
        attrs = {
            **eigen.settings,
            "num_hvps": eigen.num_hvps,
            "converged": eigen.converged,
            "names": json.dumps(list(eigen.names)),
            "shapes": json.dumps({n: list(s) for n, s in eigen.shapes.items()}),
        }
        write_group(path, _EIGEN, arrays=arrays, attrs=attrs, overwrite=overwrite)
    if trace is not None:
        attrs = {
            **trace.settings,
            "value": trace.value,
            "stderr": trace.stderr,
            "method": trace.method,
            "num_hvps": trace.num_hvps,
        }
        write_group(
            path, _TRACE, arrays={"samples": trace.samples}, attrs=attrs, overwrite=overwrite
        )
    if density is not None:
        arrays = {k: getattr(density, k) for k in ("grid", "density", "nodes", "weights")}
        attrs = {**density.settings, "num_hvps": density.num_hvps}
        write_group(path, _DENSITY, arrays=arrays, attrs=attrs, overwrite=overwrite)
    if extremes is not None:
        names = ("lambda_max", "lambda_min", "ratio", "num_hvps", "converged")
        attrs = {**extremes.settings, **{n: getattr(extremes, n) for n in names}}
        arrays = {"residuals": extremes.residuals}
        write_group(path, _EXTREMES, arrays=arrays, attrs=attrs, overwrite=overwrite)


def _read(
    path: str | os.PathLike, name: str
) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    try:
        return read_group(path, name)
    except KeyError:
        return None


def load_hessian(path: str | os.PathLike) -> HessianResults:
    """Read back what :func:`save_hessian` stored.

    Raises:
        FileNotFoundError: no file; ValueError: not a landscape file;
        KeyError: the file holds no Hessian results.
    """
    eigen = trace = density = extremes = None
    if (found := _read(path, _EIGEN)) is not None:
        arrays, attrs = found
        names = tuple(json.loads(attrs.pop("names")))
        shapes = {n: tuple(s) for n, s in json.loads(attrs.pop("shapes")).items()}
        num_hvps, converged = attrs.pop("num_hvps"), attrs.pop("converged")
        eigen = EigenResult(
            arrays["eigenvalues"],
            arrays["eigenvectors"],
            arrays["residuals"],
            num_hvps,
            converged,
            names,
            shapes,
            attrs,
        )
    if (found := _read(path, _TRACE)) is not None:
        arrays, attrs = found
        value, stderr = attrs.pop("value"), attrs.pop("stderr")
        method, num_hvps = attrs.pop("method"), attrs.pop("num_hvps")
        trace = TraceResult(value, stderr, num_hvps, method, arrays["samples"], attrs)
    if (found := _read(path, _DENSITY)) is not None:
        arrays, attrs = found
        num_hvps = attrs.pop("num_hvps")
        density = DensityResult(
            arrays["grid"], arrays["density"], arrays["nodes"], arrays["weights"], num_hvps, attrs
        )
    if (found := _read(path, _EXTREMES)) is not None:
        arrays, attrs = found
        values = [attrs.pop(n) for n in ("lambda_max", "lambda_min", "ratio")]
        num_hvps, converged = attrs.pop("num_hvps"), attrs.pop("converged")
        extremes = ExtremeEigenvalues(*values, arrays["residuals"], num_hvps, converged, attrs)
    if eigen is None and trace is None and density is None and extremes is None:
        raise KeyError(f"{os.fspath(path)} holds no Hessian results (no /hessian group)")
    return HessianResults(eigen=eigen, trace=trace, density=density, extremes=extremes)
