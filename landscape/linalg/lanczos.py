"""Thick-restart Lanczos eigenpairs in bounded memory, verified in float64."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .. import options
from .._seeding import seeded_generator
from ..checks import check_choice
from ..options import WhichName
from ..results import Result
from ._copies import _CHECK_STEPS, _CLOSE, _Check, _cluster
from ._krylov import _Lanczos
from .bounds import _memory_bound
from .operators import (
    Callback,
    SymmetricOperator,
    _check_operator,
    _Products,
    _Reference,
    _work_dtype,
    space_of,
)

Which = WhichName  # the Literal alias of landscape.options.Which


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
            ``max_basis``, ``refine``, the dtypes of the products and of the verification.
        memory_bound_bytes: the most bytes of vectors the solver held at once, whatever
            ``max_matvecs`` (what the operator needs for a product not included).
        memory_bound_vectors: the same in vectors of ``n`` entries of the operator's dtype
            (for a Hessian: copies of the model's weights).
    """

    values: np.ndarray
    vectors: torch.Tensor
    residuals: np.ndarray
    norm: float
    converged: bool
    num_matvecs: int
    num_matvecs64: int
    settings: dict[str, Any] = field(default_factory=dict)
    memory_bound_bytes: int = 0
    memory_bound_vectors: float = 0.0


def _verify(
    reference: _Products, rows: list[torch.Tensor], which: str
) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
    """``rows`` (emptied: each is freed once copied) as orthonormal float64 vectors, their
    Rayleigh quotients and explicit residual norms from one float64 product each, in the
    wanted order (dot products and norms through the operator's space). Holds the ``k``
    vectors and one product."""
    space = space_of(reference.op)
    k, n = len(rows), rows[0].numel()
    vectors = torch.empty(k, n, dtype=torch.float64, device=rows[0].device)
    for i in range(k):
        vectors[i] = rows[i]
        rows[i] = vectors[i]  # the working-dtype row is freed here
    rows.clear()
    for i in range(k):  # Gram-Schmidt twice, in float64 and in place
        for _ in range(2 if i else 0):
            vectors[i].addmv_(vectors[:i].T, space.reduce(vectors[:i] @ vectors[i]), alpha=-1)
        vectors[i] /= space.norm(vectors[i])
    values, residuals = np.zeros(k), np.zeros(k)
    for i in range(k):
        product = reference(vectors[i]).to(torch.float64)
        values[i] = float(space.reduce(torch.dot(vectors[i], product)))
        residuals[i] = space.norm(product.sub_(vectors[i], alpha=values[i]))
        del product
    ascending = np.argsort(values, kind="stable")
    order = ascending[_wanted(values[ascending], k, which)]
    where, at = list(range(k)), list(range(k))  # row of each vector, vector of each row
    for i in range(k):  # permuted in place, one row at a time
        j = where[order[i]]
        if j != i:
            row = vectors[i].clone()
            vectors[i] = vectors[j]
            vectors[j] = row
            at[i], at[j] = at[j], at[i]
            where[at[i]], where[at[j]] = i, j
    return values[order], vectors, residuals[order]


def _solve(
    products: _Products,
    start: list[torch.Tensor],
    generator: torch.Generator,
    k: int,
    which: str,
    tol: float,
    budget: int,
    capacity: int,
    host_basis: bool = False,
) -> tuple[list[torch.Tensor], float] | None:
    """Thick-restart Lanczos from the rows ``start`` until the wanted Ritz pairs' estimates
    are at most ``tol * norm`` (for ``k >= 2`` and a :class:`_Check` passed), they stop
    improving near round-off, or ``budget`` products are spent. Returns the ``k`` Ritz
    vectors (rows, wanted order) and the norm estimate, or ``None`` on a non-finite
    product."""
    first = products.count
    lanczos = _Lanczos(products, start, generator=generator, space=space_of(products.op),
                       host_basis=host_basis)  # fmt: skip
    best, stalled, check, norm, hold = math.inf, 0, None, 0.0, 0
    floor = math.sqrt(torch.finfo(start[0].dtype).eps)
    while products.count - first < budget:
        if lanczos.size >= capacity and capacity < lanczos.n:
            check = None  # the check's rows join the rest: the run goes on with them
            theta, vectors, _ = lanczos.ritz()
            keep = _wanted(theta, k + (capacity - k - len(lanczos.pending)) // 2, which)
            lanczos.restart(theta[keep], vectors[:, keep])
        more = lanczos.step(lanczos.pending[-1] if check is not None else None)
        if not lanczos.finite:
            return None
        theta, vectors, estimates = lanczos.ritz()
        idx = _wanted(theta, k, which)
        norm = float(np.abs(theta).max())
        error = float(estimates[idx].max()) if len(idx) == k else math.inf
        if error < 0.5 * best or error > floor * norm:  # stalls count near round-off only
            best, stalled = min(best, error), 0
        else:
            stalled += 1
        ok = error <= tol * norm
        if check is not None:
            passed = check.passed(lanczos, theta[idx], tol * norm, which)
            if passed is None and more:
                continue
            if passed and ok:
                break
            check = None  # it found more: go on, and check again once converged
        elif ok and k >= 2 and more:
            group = _cluster(theta[idx], _CLOSE * tol * norm)
            band = min(group + 1, k + 1) if group > 1 else 1
            if len(lanczos.pending) < band and k + 2 * band + 3 <= capacity:
                while len(lanczos.pending) < band and lanczos.refill():
                    pass  # a block as wide as the cluster, and one more, for a while
                hold = products.count + 2 * capacity
            elif products.count < hold:
                continue
            elif k + len(lanczos.pending) + _CHECK_STEPS < capacity:
                # converged: room for the check's least products, the other Ritz vectors kept
                room = (
                    capacity - len(lanczos.pending) - 1 - _Check.least_for(theta[idx], tol * norm)
                )
                if lanczos.size - len(lanczos.pending) > max(k, room):
                    keep = _wanted(theta, max(k, room), which)
                    lanczos.restart(theta[keep], vectors[:, keep])
                if not lanczos.refill():
                    break
                check = _Check(lanczos, theta[idx], capacity, tol * norm)
            elif capacity < lanczos.n:
                break  # else the basis grows to the whole space instead of a check
        elif ok or not more or stalled >= capacity:
            break
    theta, vectors, _ = lanczos.ritz()
    idx = _wanted(theta, k, which)
    lanczos.restart(theta[idx], vectors[:, idx])
    return [lanczos.basis.row(i) for i in range(len(idx))], norm


def _solver_inputs(
    op: SymmetricOperator, tol: float | None, seed: int | torch.Generator, callback: Callback
) -> tuple[float, torch.Generator, _Products, _Reference]:
    """What both eigensolvers start from: ``tol`` (default by dtype, checked), the
    generator, the products in the working dtype and the float64 reference (built on first
    use; the working products when the operator is its own reference)."""
    if tol is None:
        tol = 1e-8 if op.dtype == torch.float64 else 1e-4
    if tol < 0:
        raise ValueError(f"tol must be non-negative, got {tol}")
    generator = seed if isinstance(seed, torch.Generator) else seeded_generator(seed, op.device)
    products = _Products(op, _work_dtype(op.dtype), callback)
    return tol, generator, products, _Reference(products)


def lanczos_eigenpairs(
    op: SymmetricOperator,
    k: int,
    *,
    which: Which = "LA",
    tol: float | None = None,
    max_matvecs: int = 500,
    seed: int | torch.Generator = 0,
    block_size: int | None = None,
    max_basis: int | None = None,
    refine: bool = True,
    start: torch.Tensor | None = None,
    callback: Callback = None,
    host_basis: bool = False,
) -> Eigenpairs:
    """``k`` eigenpairs of a symmetric operator by thick-restart Lanczos, verified in float64.

    Lanczos with full reorthogonalization runs from a random vector (``block_size`` of
    them) in a basis of at most ``max_basis`` vectors: when it is full, the basis is
    replaced in place by its best Ritz vectors (a thick restart, Wu and Simon 2000), so the
    memory does not grow with ``max_matvecs``. It stops once every wanted Ritz pair has a
    residual estimate ``<= tol * ||A||`` (``||A||`` estimated by the largest Ritz value in
    magnitude), checked after every product. A single vector sees one copy of each
    eigenvalue, so for ``k >= 2`` the pairs are accepted only after 3 more products from a
    random vector orthogonal to the basis (the other Ritz vectors kept beside it) leave them
    in place (a missed copy or member of a cluster shows up there, and the run goes on with
    both vectors); where wanted values lie within ``3 tol ||A||`` of each other, a wider
    block runs for a while and the check takes 12 products; ``block_size=k`` resolves up to
    ``k`` copies from the start, at about twice the products.

    The pairs are then checked, never taken on trust: each Ritz vector, orthonormalized in
    float64, gets one explicit product of ``op.float64()`` (asked for only then, once the
    basis holds the ``k`` vectors; the operator itself when it has no float64 version):
    the returned values are those Rayleigh quotients, the residuals ``||A v - lambda v||``
    explicit, and ``converged`` means every residual is
    ``<= tol * ||A||``. Accuracy: each eigenvalue is then within ``tol * ||A||`` of an
    eigenvalue of ``A``, and within ``(tol * ||A||)**2 / gap`` when it is ``gap`` away from
    the rest of the spectrum (so the default 1e-4 already gives about ``1e-8 ||A||**2 /
    gap``). When the float64 residuals stay above the tolerance (lower-precision products
    biased or stalled, or the estimates wrong) and ``refine`` is true, Lanczos continues in
    float64 from the vectors found, in a basis of at most ``max(2 k + 2, max_basis // 2)``
    float64 vectors, and checks again.

    Memory: the result's ``memory_bound_bytes`` (see :func:`_memory_bound`): the basis,
    ``max_basis`` vectors of ``n`` in the working dtype (the operator's, at least float32;
    one tensor each, none allocated ahead), or ``k`` of them with ``k`` float64 copies while
    verified, or a refinement's float64 basis; at most 32 MiB more for products with the
    basis. Besides: what the operator needs for a product. Split vectors (an operator with
    a ``space``): rows of this rank's pieces, dot products and norms through the space.
    ``host_basis=True`` keeps the basis in host memory (pinned for a GPU) and streams it
    to the device 16 MiB at a time for each product with it: the device then holds the
    row multiplied, the product and the verification (``memory_bound_bytes``), the host
    the basis (``settings["host_basis_bytes"]``), at the cost of the copies.

    Args:
        op: a :class:`SymmetricOperator`.
        k: number of eigenpairs.
        which: "LA" largest algebraic, "SA" smallest algebraic, "LM" largest magnitude,
            "BE" both ends (``k // 2`` smallest and the rest largest).
        tol: residual tolerance relative to ``||A||``; default 1e-8 for float64 products
            and 1e-4 for lower precision.
        max_matvecs: budget of products, checks included; on running out the result has
            ``converged=False``.
        seed: seed (or generator) of the random start and check vectors.
        block_size: vectors started from, at most ``size``; default 1 (or ``len(start)``).
        max_basis: vectors in the basis, default ``3 k + 5`` (more for a larger block).
        refine: continue in float64 when the float64 residuals stay above the tolerance.
        start: the start block instead of random vectors, ``(n,)`` or ``(block_size, n)``
            (a previous eigenvector, to warm-start a nearby problem).
        callback: called with no argument after every product (a progress bar's
            ``update``, say).
        host_basis: keep the basis rows in host memory (see Memory above).

    Returns:
        an :class:`Eigenpairs`; values, vectors and residuals NaN if a product is not finite.

    Raises:
        ValueError: ``k`` not in ``1..size``, ``max_matvecs < 2 k``, negative ``tol``,
            bad ``which``, ``block_size`` or ``max_basis``.
        TypeError: ``op`` is not an operator.

    Example:
        >>> from landscape.linalg import dense_operator
        >>> matrix = torch.diag(torch.arange(1.0, 7.0, dtype=torch.float64))
        >>> result = lanczos_eigenpairs(dense_operator(matrix), 2, which="SA")
        >>> result.values.round(12), result.converged
        (array([1., 2.]), True)
    """
    _check_operator(op)
    n, space = op.size, space_of(op)
    m = space.size  # entries held here (n unless the vectors are split over ranks)
    which = check_choice(which, options.Which, "which")
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the operator size {n}, got {k}")
    if max_matvecs < 2 * k:
        raise ValueError(f"max_matvecs must be at least 2 * k = {2 * k}, got {max_matvecs}")
    if start is not None:
        start = start.reshape(1, -1) if start.dim() == 1 else start
        if start.dim() != 2 or start.shape[1] != m:
            raise ValueError(f"start must have shape (n,) or (block_size, n) with n = {m}, "
                             f"got {tuple(start.shape)}")  # fmt: skip
        block_size = len(start) if block_size is None else block_size
        if len(start) != block_size:
            raise ValueError(f"start has {len(start)} vectors, block_size is {block_size}")
    block_size = 1 if block_size is None else block_size
    if not 1 <= block_size <= n:
        raise ValueError(f"block_size must be between 1 and {n}, got {block_size}")
    least = k + 2 * block_size + 3
    max_basis = max(3 * k + 5, least) if max_basis is None else max_basis
    if max_basis < least:
        raise ValueError(f"max_basis must be at least k + 2 block_size + 3 = {least}, "
                         f"got {max_basis}")  # fmt: skip
    tol, generator, products, reference = _solver_inputs(op, tol, seed, callback)
    work = products.work
    refine_basis = max(2 * k + 2, max_basis // 2) if reference.twin else max_basis
    refine_basis = refine_basis if refine else 0
    settings = {
        "k": k,
        "which": which,
        "tol": tol,
        "max_matvecs": max_matvecs,
        "seed": seed if isinstance(seed, int) else None,
        "block_size": block_size,
        "max_basis": max_basis,
        "refine": refine,
        "matvec_dtype": str(op.dtype).removeprefix("torch."),
    }
    size = torch.empty((), dtype=op.dtype).element_size()
    capacity = min(max_basis, n)
    bound = _memory_bound(m, k, capacity, work.itemsize, min(refine_basis, n), host_basis)
    if host_basis:
        settings["host_basis_bytes"] = max(capacity * work.itemsize, refine_basis * 8) * m
    memory = {"memory_bound_bytes": bound, "memory_bound_vectors": bound / (m * size)}
    if start is None:
        start = space.normal(block_size, generator, work, op.device)
    else:
        start = start.to(op.device, work, copy=True)

    found = _solve(
        products, list(start), generator, k, which, tol, max_matvecs - k, capacity, host_basis
    )
    del start
    if found is not None:
        values, vectors, residuals = _verify(reference.get(), found[0], which)
        norm = max(found[1], float(np.abs(values).max()))
        left = max_matvecs - products.count - reference.count64
        if residuals.max() > tol * norm and refine and left >= 3 * k and np.isfinite(norm):
            again = _solve(
                reference.get(), list(vectors), generator, k, which, tol, left - k,
                min(refine_basis, n), host_basis,
            )  # fmt: skip
            del vectors
            if again is not None:
                again = _verify(reference.get(), again[0], which) + again[1:]
            found = again
            if found is not None:
                values, vectors, residuals, norm = found
                norm = max(norm, float(np.abs(values).max()))
    count64 = reference.count64
    total = products.count + count64
    settings["verify_dtype"] = reference.dtype_name()
    if found is None or not np.isfinite(residuals).all():
        nan = np.full(k, np.nan)
        vectors = torch.full((k, m), math.nan, dtype=torch.float64, device=op.device)
        return Eigenpairs(nan, vectors, nan, math.nan, False, total, count64, settings, **memory)
    converged = bool((residuals <= tol * norm).all())
    return Eigenpairs(
        values, vectors, residuals, norm, converged, total, count64, settings, **memory
    )
