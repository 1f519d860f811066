"""Block Lanczos eigenpairs with full reorthogonalization, verified in float64."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg
import torch

from .. import options
from .._seeding import seeded_generator
from ..checks import check_choice
from ..options import WhichName
from ..results import Result
from .operators import (
    Callback,
    SymmetricOperator,
    _check_operator,
    _normal,
    _Products,
    _reference,
    _work_dtype,
)

Which = WhichName  # the Literal alias of landscape.options.Which


_CHUNK = 32  # basis rows are stored in chunks, so memory grows with the steps actually taken
_ETA = 1 / math.sqrt(2)  # DGKS: reorthogonalize again when a norm drops below this fraction


class _BlockLanczos:
    """Block Lanczos with full reorthogonalization.

    Each product first loses its components along the current and the previous block (the
    Lanczos recurrence), then one classical Gram-Schmidt pass over the whole basis, and a
    second pass only where that pass took off more than ``1 - 1/sqrt(2)`` of the vector's
    norm (the criterion of Daniel, Gragg, Kaufman and Stewart, 1976: after a pass that keeps
    most of the norm, the vector is orthogonal to working precision). Measured against the
    product's own norm the second pass would run at almost every step, as the recurrence
    alone removes most of it.

    The rows ``V`` of the basis are orthonormal; after the products of ``m`` rows,
    ``A V_m^T = V^T T[:, :m]`` where ``T`` holds the Gram-Schmidt coefficients. ``T[:m, :m]``
    (upper triangle, symmetrized) is the Rayleigh quotient ``V_m A V_m^T``, and the rows of
    ``T`` below ``m`` give each Ritz pair's residual norm without another product. A block
    that loses rank (an invariant subspace) is refilled with random vectors when there is a
    generator (their coefficients are 0), and shrinks otherwise.

    ``T`` is on the host by design (it is small, and scipy diagonalizes it), so each step
    reads its coefficients and norms back from the device: a few transfers of ``block``
    numbers per step (each a synchronization on CUDA), never one per entry of a vector.
    """

    def __init__(
        self,
        matvec: Callable[[torch.Tensor], torch.Tensor],
        start: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ):
        self._matvec = matvec
        self._generator = generator
        self.n = start.shape[1]
        self.dtype, self.device = start.dtype, start.device
        self._tiny = 1e-10 if self.dtype == torch.float64 else 1e-5
        self._chunks: list[torch.Tensor] = []
        self._T = np.zeros((0, 0))
        self.size = 0  # rows in the basis
        self.done = 0  # rows whose products are in T
        self.finite = True
        self._previous = 0  # first row of the previous block
        for row in start:
            w = self._project(row[None].clone())[0][0]
            if not self._accept(w, float(row.norm()), None):
                self._refill()

    # -- the basis
    def _rows(self, stop: int, start: int = 0) -> Iterator[tuple[int, torch.Tensor]]:
        for i, chunk in enumerate(self._chunks):
            lo = i * _CHUNK
            if lo + _CHUNK <= start:
                continue
            if lo >= stop:
                return
            a, b = max(start - lo, 0), min(_CHUNK, stop - lo)
            yield lo + a, chunk[a:b]

    def _append(self, v: torch.Tensor) -> None:
        if self.size % _CHUNK == 0:
            self._chunks.append(v.new_empty(_CHUNK, self.n))
        self._chunks[-1][self.size % _CHUNK] = v
        self.size += 1
        if self.size > len(self._T):
            grown = np.zeros((2 * self.size + 8,) * 2)
            grown[: len(self._T), : len(self._T)] = self._T
            self._T = grown

    def _project(
        self, w: torch.Tensor, start: int = 0, local: int | None = None
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Rows ``w`` made orthogonal to basis rows ``start:size``, and the coefficients
        ``(size - start, len(w))`` taken off: first along rows ``local:size`` (when given),
        then one or two classical Gram-Schmidt passes over them all."""
        total = np.zeros((self.size - start, len(w)))
        if self.size == start:
            return w, total
        if local is not None:
            rows = torch.cat([r for _, r in self._rows(self.size, local)])
            coef = rows @ w.T
            w = w - coef.T @ rows
            total[local - start :] += coef.double().cpu().numpy()
        before = w.norm(dim=1)
        for _ in range(2):
            coef = torch.cat([rows @ w.T for _, rows in self._rows(self.size, start)])
            for lo, rows in self._rows(self.size, start):
                w = w - coef[lo - start : lo - start + len(rows)].T @ rows
            total += coef.double().cpu().numpy()
            after = w.norm(dim=1)
            if not bool((after < _ETA * before).any()):
                break
            before = after
        return w, total

    def _accept(self, w: torch.Tensor, scale: float, column: int | None) -> bool:
        norm = float(w.norm())
        if not norm > self._tiny * scale or self.size >= self.n:
            return False
        self._append(w / norm)
        if column is not None:
            self._T[self.size - 1, column] = norm
        return True

    def _refill(self) -> None:
        """A random row orthogonal to the basis, when there is a generator and room."""
        if self._generator is None or self.size >= self.n:
            return
        for _ in range(3):
            r = _normal((self.n,), self._generator, self.dtype, self.device)
            w = self._project(r[None])[0][0]
            if self._accept(w, float(r.norm()), None):
                return

    # -- steps
    def step(self) -> bool:
        """Products of the current block, the next block; False once nothing is left (an
        invariant subspace without a generator, the whole space, or a non-finite product)."""
        lo, hi = self.done, self.size
        if lo == hi:
            return False
        block = torch.cat([rows for _, rows in self._rows(hi, lo)])
        products = torch.empty_like(block)
        for i in range(len(block)):
            products[i] = self._matvec(block[i])
        if not bool(torch.isfinite(products).all()):
            self.finite = False
            return False
        scales = products.norm(dim=1).double().cpu().numpy()
        w, coef = self._project(products, local=self._previous)
        self._T[:hi, lo:hi] = coef
        self.done, self._previous = hi, lo
        for j in range(hi - lo):
            row, new = self._project(w[j : j + 1], start=hi)
            self._T[hi : self.size, lo + j] += new[:, 0]
            if not self._accept(row[0], scales[j], lo + j):
                self._refill()
        return self.size > self.done

    def ritz(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ritz values (ascending), the eigenvectors of ``T`` (columns) and each pair's
        residual norm ``||A x - theta x||`` from the Lanczos relation."""
        m = self.done
        upper = np.triu(self._T[:m, :m])
        theta, vectors = scipy.linalg.eigh(upper + np.triu(upper, 1).T)
        estimates = np.linalg.norm(self._T[m : self.size, :m] @ vectors, axis=0)
        return theta, vectors, estimates

    def combine(self, coefficients: np.ndarray) -> torch.Tensor:
        """Rows ``coefficients[:, i]^T V``: the Ritz vectors for the given columns."""
        coef = torch.as_tensor(coefficients.T, dtype=self.dtype, device=self.device)
        out = coef.new_zeros(coef.shape[0], self.n)
        for lo, rows in self._rows(self.done):
            out += coef[:, lo : lo + len(rows)] @ rows
        return out


def _wanted(theta: np.ndarray, k: int, which: str) -> np.ndarray:
    """Indices of the wanted values (``theta`` ascending), in the order results use."""
    m = len(theta)
    k = min(k, m)
    if which == "LA":
        return np.arange(m - 1, m - k - 1, -1)
    if which == "SA":
        return np.arange(k)
    if which == "LM":
        return np.argsort(-np.abs(theta), kind="stable")[:k]
    low = k // 2
    return np.concatenate([np.arange(m - 1, m - (k - low) - 1, -1), np.arange(low - 1, -1, -1)])


@dataclass(frozen=True, eq=False)
class Eigenpairs(Result):
    """Eigenpairs of a symmetric operator, verified with explicit float64 products.

    Attributes:
        values: shape ``(k,)``, float64 Rayleigh quotients ``v^T A v`` of the returned
            vectors from float64 products: descending for "LA" and "BE" (largest first,
            then the smallest), ascending for "SA", by descending magnitude for "LM".
        vectors: float64 tensor ``(k, n)`` on the operator's device, orthonormal rows.
        residuals: ``||A v - lambda v||`` from the same float64 products.
        norm: the estimate of ``||A||`` the tolerance is relative to (the largest Ritz
            value in magnitude).
        converged: every residual is at most ``tol * norm``.
        num_matvecs: products spent, in the operator's dtype and in float64 together.
        num_matvecs64: of those, products of the float64 operator (verification, refining).
        settings: ``k``, ``which``, ``tol``, ``max_matvecs``, ``seed``, ``block_size``,
            ``refine``, the dtypes of the products and of the verification.
    """

    values: np.ndarray
    vectors: torch.Tensor
    residuals: np.ndarray
    norm: float
    converged: bool
    num_matvecs: int
    num_matvecs64: int
    settings: dict[str, Any] = field(default_factory=dict)


def _verify(
    reference: _Products, vectors: torch.Tensor, which: str
) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
    """Rayleigh-Ritz in float64 on the span of ``vectors``: values (wanted order), vectors
    and explicit residual norms, all from ``len(vectors)`` float64 products. At most
    ``3 len(vectors)`` float64 vectors are held at once (one block is returned)."""
    basis = torch.linalg.qr(vectors.to(torch.float64).T).Q.T
    products = torch.empty_like(basis)
    for i in range(len(basis)):
        products[i] = reference(basis[i])
    small = (basis @ products.T).cpu().numpy()
    mu, z = np.linalg.eigh((small + small.T) / 2)
    order = _wanted(mu, len(mu), which)
    rotation = torch.as_tensor(z[:, order].T, dtype=torch.float64, device=basis.device)
    vectors = rotation @ basis
    del basis
    products = rotation @ products
    values = mu[order]
    shift = torch.as_tensor(values, dtype=torch.float64, device=vectors.device)[:, None]
    residuals = products.sub_(shift * vectors).norm(dim=1).cpu().numpy()
    return values, vectors, residuals


def _solve(
    products: _Products,
    reference: _Products,
    start: torch.Tensor,
    generator: torch.Generator,
    k: int,
    which: str,
    tol: float,
    budget: int,
) -> tuple[np.ndarray, torch.Tensor, np.ndarray, float, bool, bool] | None:
    """One block Lanczos run with verification; ``None`` on a non-finite product, else
    ``(values, vectors, residuals, norm, converged, stalled)``. With a separate float64
    ``reference`` the pairs are also checked each time the basis doubles, and ``stalled``
    says that lower-precision products cannot bring the float64 residuals down (the
    Lanczos estimates say converged, or the residuals did not halve since the last check)."""
    mixed = reference is not products

    def spent() -> int:
        return products.count + (reference.count if mixed else 0)

    first = spent()
    lanczos = _BlockLanczos(products, start, generator=generator)
    b = len(start)
    next_check, verify_at, last = k, 8 * b, math.inf
    while True:
        more = lanczos.step()
        if not lanczos.finite:
            return None
        room = budget - (spent() - first) >= b + k
        if more and room and lanczos.done < next_check:
            continue
        theta, coefficients, estimates = lanczos.ritz()
        idx = _wanted(theta, k, which)
        norm = float(np.abs(theta).max())
        estimated = bool(estimates[idx].max() <= tol * norm)
        scheduled = mixed and lanczos.done >= verify_at  # catches a stall above tol early
        if more and room and not (estimated or scheduled):
            next_check = lanczos.done + max(b, lanczos.done // 16)
            continue
        values, vectors, residuals = _verify(
            reference, lanczos.combine(coefficients[:, idx]), which
        )
        if not np.isfinite(residuals).all():
            return None
        norm = max(norm, float(np.abs(values).max()))
        converged = bool((residuals <= tol * norm).all())
        room = budget - (spent() - first) >= b + k
        if converged or not more or not room:
            return values, vectors, residuals, norm, converged, False
        if mixed and (estimated or residuals.max() > 0.5 * last):
            return values, vectors, residuals, norm, converged, True
        last, verify_at, next_check = residuals.max(), 2 * lanczos.done, lanczos.done + b
        del vectors  # freed before the next check makes new ones


def lanczos_eigenpairs(
    op: SymmetricOperator,
    k: int,
    *,
    which: Which = "LA",
    tol: float | None = None,
    max_matvecs: int = 500,
    seed: int | torch.Generator = 0,
    block_size: int | None = None,
    refine: bool = True,
    start: torch.Tensor | None = None,
    callback: Callback = None,
) -> Eigenpairs:
    """``k`` eigenpairs of a symmetric operator by block Lanczos, verified in float64.

    The Krylov space grows from a random block of ``block_size`` vectors (default ``k``)
    until every wanted Ritz pair has a residual estimate ``<= tol * ||A||`` (``||A||``
    estimated by the largest Ritz value in magnitude). A block of ``k`` vectors holds up to
    ``k`` copies of a repeated eigenvalue and resolves clusters of up to ``k`` close ones at
    the speed set by their distance to the rest of the spectrum, so no copy of a wanted
    eigenvalue is skipped (a single vector sees one copy of each eigenvalue only). Block
    Lanczos was chosen over restarts deflated against the converged vectors because a
    restart can only show that nothing was missed by running to convergence once more,
    every call; the block costs about twice the products of a single vector for ``k = 5``
    on an MLP's Hessian and nothing extra for ``k = 1``. Within a cluster narrower than
    ``tol * ||A||`` a returned vector may mix its members; each value is still within the
    tolerance of an eigenvalue.

    The pairs are then checked, never taken on trust: a Rayleigh-Ritz step on their span
    with ``k`` explicit products of ``op.float64()`` (the operator itself when it has no
    float64 version) gives the returned values, vectors and residuals, and ``converged``
    means every such residual is ``<= tol * ||A||``; an eigenvalue is then within
    ``tol * ||A||`` of an eigenvalue of ``A`` (within ``(tol * ||A||)**2 / gap`` when it is
    ``gap`` away from the rest). When products in a lower precision stall above the
    tolerance and ``refine`` is true, the run continues in float64 from the pairs found.

    Memory, in vectors of ``n = size`` on the operator's device: the basis, at most
    ``max_matvecs + block_size + 31`` in the working dtype (the operator's, at least
    float32; allocated 32 at a time), and at most ``7 block_size + k`` more in that dtype
    while a step or a check runs; the verification holds at most ``3 k`` float64 vectors
    (``k`` are returned). A refinement runs in float64 throughout: its basis replaces the
    first and holds at most ``m + k + 31`` float64 vectors for its ``m`` products (at most
    what is left of ``max_matvecs``), with at most ``8 k`` more, and the ``k`` pairs found
    first are kept (a float32 basis cannot refine: it holds residual directions only down
    to about ``1e-5`` of a product). Besides: what the operator needs for a product (for
    ``op.float64()`` a float64 copy of its input), and on the CPU random blocks are drawn
    in float64 (``block_size`` vectors while drawn).

    Args:
        op: a :class:`SymmetricOperator`.
        k: number of eigenpairs.
        which: "LA" largest algebraic, "SA" smallest algebraic, "LM" largest magnitude,
            "BE" both ends (``k // 2`` smallest and the rest largest).
        tol: residual tolerance relative to ``||A||``; default 1e-8 for float64 products
            and 1e-4 for lower precision.
        max_matvecs: budget of products, checks included; on running out the result has
            ``converged=False``.
        seed: seed (or generator) of the random start block and refills.
        block_size: vectors per block, at most ``size``; default ``k`` (or ``len(start)``).
        refine: continue in float64 when lower-precision products stall.
        start: the start block instead of random vectors, ``(n,)`` or ``(block_size, n)``
            (a previous eigenvector, to warm-start a nearby problem: when it is close to
            the wanted eigenvector a few products suffice).
        callback: called with no argument after every product (a progress bar's
            ``update``, say).

    Returns:
        an :class:`Eigenpairs`; values, vectors and residuals NaN if a product is not finite.

    Raises:
        ValueError: ``k`` not in ``1..size``, ``max_matvecs < 2 k``, negative ``tol``,
            bad ``which`` or ``block_size``.
        TypeError: ``op`` is not an operator.

    Example:
        >>> from landscape.linalg import dense_operator
        >>> matrix = torch.diag(torch.arange(1.0, 7.0, dtype=torch.float64))
        >>> result = lanczos_eigenpairs(dense_operator(matrix), 2, which="SA")
        >>> result.values.round(12), result.converged
        (array([1., 2.]), True)
    """
    _check_operator(op)
    n = op.size
    which = check_choice(which, options.Which, "which")
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the operator size {n}, got {k}")
    if max_matvecs < 2 * k:
        raise ValueError(f"max_matvecs must be at least 2 * k = {2 * k}, got {max_matvecs}")
    if start is not None:
        start = start.reshape(1, -1) if start.dim() == 1 else start
        if start.dim() != 2 or start.shape[1] != n:
            raise ValueError(f"start must have shape (n,) or (block_size, n) with n = {n}, "
                             f"got {tuple(start.shape)}")  # fmt: skip
        block_size = len(start) if block_size is None else block_size
        if len(start) != block_size:
            raise ValueError(f"start has {len(start)} vectors, block_size is {block_size}")
    block_size = k if block_size is None else block_size
    if not 1 <= block_size <= n:
        raise ValueError(f"block_size must be between 1 and {n}, got {block_size}")
    if tol is None:
        tol = 1e-8 if op.dtype == torch.float64 else 1e-4
    if tol < 0:
        raise ValueError(f"tol must be non-negative, got {tol}")
    generator = seed if isinstance(seed, torch.Generator) else seeded_generator(seed, op.device)
    work = _work_dtype(op.dtype)
    products = _Products(op, work, callback)
    ref_op = _reference(op)
    reference = products if ref_op is op else _Products(ref_op, torch.float64, callback)
    settings = {
        "k": k,
        "which": which,
        "tol": tol,
        "max_matvecs": max_matvecs,
        "seed": seed if isinstance(seed, int) else None,
        "block_size": block_size,
        "refine": refine,
        "matvec_dtype": str(op.dtype).removeprefix("torch."),
        "verify_dtype": str(ref_op.dtype).removeprefix("torch."),
    }
    if start is None:
        start = _normal((block_size, n), generator, work, op.device)
    start = start.to(op.device, work)
    found = _solve(products, reference, start, generator, k, which, tol, max_matvecs)
    left = max_matvecs - products.count - (reference.count if reference is not products else 0)
    if found is not None and found[5] and refine and left >= 2 * k:
        again = _solve(reference, reference, found[1], generator, k, which, tol, left)
        if again is not None and (again[4] or again[2].max() < found[2].max()):
            found = again
    count64 = reference.count if reference is not products else 0
    total = products.count + count64
    if found is None:
        nan = np.full(k, np.nan)
        vectors = torch.full((k, n), math.nan, dtype=torch.float64, device=op.device)
        return Eigenpairs(nan, vectors, nan, math.nan, False, total, count64, settings)
    values, vectors, residuals, norm, converged, _ = found
    return Eigenpairs(values, vectors, residuals, norm, converged, total, count64, settings)
