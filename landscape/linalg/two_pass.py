"""Two-pass Lanczos eigenpairs: three vectors and the tridiagonal matrix, then the basis
regenerated to form only the wanted Ritz vectors; verified in float64."""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import options
from ..checks import check_choice
from ._three_term import _ghosts, _three_term, _tridiagonal
from .lanczos import Eigenpairs, Which, _solver_inputs, _verify, _wanted
from .operators import (
    Callback,
    SymmetricOperator,
    _check_operator,
    _check_whole,
    _normal,
    _Products,
)

_CHECK_EVERY = 0.1  # pass 1 looks at its Ritz values after this fraction more steps


def two_pass_bound(n: int, k: int, itemsize: int) -> int:
    """Bytes of vectors :func:`two_pass_eigenpairs` holds at once: ``k`` Ritz vectors and
    one more being formed, three Lanczos vectors and a float64 draw of the start, or, while
    verified, the ``k`` vectors with their float64 copies (what the operator needs for a
    product not included).

    Example:
        >>> two_pass_bound(1000, 5, 4)  # 5 float32 vectors and their float64 copies
        60000
    """
    return max((k + 4) * itemsize + 8, k * (itemsize + 8), 8 * (k + 1)) * n


class _Deflated:
    """``A + sum_i (c - lambda_i) x_i x_i^T`` over the rows found: their eigenvalues moved
    to ``c``, where they are not wanted, and nothing else held."""

    def __init__(self, products: _Products, rows: list[torch.Tensor], values: list[float]):
        self.products, self.rows, self.values, self.c = products, rows, values, 0.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = self.products(x)
        for row, value in zip(self.rows, self.values, strict=True):
            y.add_(row, alpha=(self.c - value) * float(torch.dot(row, x)))
        return y


def _run(deflated, generator, k, which, tol, budget, norm, eps, found):
    """One run: pass 1 from a fresh random start until the wanted kept Ritz values are
    within ``tol * norm`` (or the budget is spent); returns ``(theta, S, picks, alpha,
    state, norm)``: the Ritz values, ``T``'s eigenvectors, the indices of the Ritz values
    that enter the wanted set next to ``found`` (the values held), the recurrence's
    diagonal (to compare pass 2 with), and the generator's state before the draw."""
    state = generator.get_state()
    n = deflated.products.op.size
    start = _normal((n,), generator, deflated.products.work, deflated.products.op.device)
    every = [1]

    def stop(alpha: np.ndarray, beta: np.ndarray) -> bool:
        m = len(alpha)
        if m < every[0] and m < budget:
            return False
        every[0] = m + max(1, int(_CHECK_EVERY * m))
        return _settled(alpha, beta, k, which, tol, norm, eps, found)[0]

    alpha, beta, finite = _three_term(deflated, start, budget, stop=stop)
    del start
    if not finite:
        return None
    done, picks, theta, vectors = _settled(alpha, beta, k, which, tol, norm, eps, found)
    return theta, vectors, picks, alpha, state, done


def _settled(alpha, beta, k, which, tol, norm, eps, held):
    """``(done, picks, theta, S)``: whether the wanted kept Ritz values are converged, and
    which kept Ritz values enter the wanted set next to the values ``held``."""
    theta, vectors = _tridiagonal(alpha, beta)
    keep = _ghosts(alpha, beta, eps)[0]
    estimates = abs(beta[-1]) * np.abs(vectors[-1])
    scale = max(norm, float(np.abs(theta).max()))
    kept = np.flatnonzero(keep)
    own = kept[_wanted(theta[kept], k, which)]  # this run's wanted, in wanted order
    if len(held) >= k:  # a later run: its outermost values bound the rest (interlacing)
        ends = [kept[-1]] if which == "LA" else [kept[0]] if which == "SA" else kept[[0, -1]]
        own = own[np.isin(own, ends)]
    done = bool((estimates[own] <= tol * scale).all()) or beta[-1] == 0
    picks = own[_select(held, theta[own], k, which, tol * scale)[1]]
    return done, picks, theta, vectors


def _select(held, new: np.ndarray, k: int, which: str, margin: float):
    """The wanted ``k`` of the values ``held`` and ``new`` together: ``(kept held indices,
    entering new indices)``. A held value wins a tie within ``margin`` (so that runs end)."""
    held = np.asarray(held, dtype=float)
    middle = (held.max() + held.min()) / 2 if len(held) else 0.0
    outward = {"LA": 1.0, "SA": -1.0}.get(which)
    if outward is None:  # "LM" and "BE": away from 0, away from the middle
        outward = np.sign(held - (middle if which == "BE" else 0.0))
    both = np.concatenate([held + margin * outward, new])
    ascending = np.argsort(both, kind="stable")
    chosen = ascending[_wanted(both[ascending], k, which)]
    return sorted(int(i) for i in chosen if i < len(held)), sorted(
        int(i) - len(held) for i in chosen if i >= len(held)
    )


def two_pass_eigenpairs(
    op: SymmetricOperator,
    k: int,
    *,
    which: Which = "LA",
    tol: float | None = None,
    max_matvecs: int = 1000,
    seed: int | torch.Generator = 0,
    callback: Callback = None,
) -> Eigenpairs:
    """``k`` eigenpairs by two-pass Lanczos in ``k + 3`` vectors, verified in float64.

    Pass 1 runs the plain three-term recurrence (no reorthogonalization: three vectors of
    ``n``) and keeps only the tridiagonal matrix ``T``, until its ``k`` wanted Ritz values
    have residual estimates ``beta_m |s_mi| <= tol * ||A||``. Without reorthogonalization
    a converged eigenvalue comes back as ghost copies: the Cullum-Willoughby test (a value
    of ``T`` that is also one of ``T`` without its first row is spurious; copies within
    round-off are one eigenvalue) leaves one Ritz value per eigenvalue. Pass 2 draws the same
    start vector again (the generator's state is kept, not the vector), regenerates the
    basis one vector at a time and adds each into the wanted Ritz vectors ``x_i = V s_i``.

    One start vector sees one copy of each eigenvalue, so runs repeat on the operator with
    the pairs found moved to an unwanted value ``c`` (``A + sum_i (c - lambda_i) x_i
    x_i^T``: the smallest Ritz value for "LA", the largest for "SA", 0 for "LM", the middle
    for "BE"), keeping the ``k`` wanted pairs of all runs, until a run brings none (a
    missed copy or cluster member shows up there). Each run costs about twice the products
    of one Lanczos pass; the price of the memory.

    What is verified: every returned vector, orthonormalized in float64, gets one product
    of ``op.float64()``; the values are those Rayleigh quotients, the residuals explicit,
    and ``converged`` means every residual is ``<= tol * ||A||``, as for
    :func:`~landscape.linalg.lanczos_eigenpairs` (whose values these match). The
    ghost test and the estimates only steer the runs. Pass 2 regenerates the basis only
    when the operator's products are deterministic; if not, ``settings["pass2_drift"]``
    (the largest change of a diagonal entry of ``T``) says so, and the verification decides.
    There is no float64 refinement here: lower-precision products whose round-off keeps the
    residuals above ``tol`` give ``converged=False``.

    Memory (``memory_bound_bytes``, :func:`two_pass_bound`): ``k`` Ritz vectors, three
    Lanczos vectors and a float64 draw, or the ``k`` vectors and their float64 copies while
    verified, whatever ``max_matvecs``. Besides: what the operator needs for a product.

    Args:
        op: a :class:`SymmetricOperator`.
        k: number of eigenpairs.
        which: "LA", "SA", "LM" or "BE", as in :func:`~landscape.linalg.lanczos_eigenpairs`.
        tol: residual tolerance relative to ``||A||``; default 1e-8 for float64 products
            and 1e-4 for lower precision.
        max_matvecs: budget of products, both passes and the verification together.
        seed: seed (or generator) of the start vectors.
        callback: called with no argument after every product.

    Returns:
        an :class:`Eigenpairs` (``settings["strategy"] == "two-pass"``); NaN values,
        vectors and residuals if a product is not finite.

    Raises:
        ValueError: ``k`` not in ``1..size``, ``max_matvecs < 4 k``, negative ``tol``, bad
            ``which``.

    Example:
        >>> from landscape.linalg import dense_operator
        >>> matrix = torch.diag(torch.tensor([3.0, 1.0, 1.0, -2.0], dtype=torch.float64))
        >>> two_pass_eigenpairs(dense_operator(matrix), 2).values
        array([3., 1.])
    """
    _check_operator(op)
    _check_whole(op, "two-pass Lanczos")
    n = op.size
    which = check_choice(which, options.Which, "which")
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the operator size {n}, got {k}")
    if max_matvecs < 4 * k:
        raise ValueError(f"max_matvecs must be at least 4 k = {4 * k}, got {max_matvecs}")
    tol, generator, products, reference = _solver_inputs(op, tol, seed, callback)
    work = products.work
    bound = two_pass_bound(n, k, work.itemsize)
    size = torch.empty((), dtype=op.dtype).element_size()
    settings = {
        "k": k, "which": which, "tol": tol, "max_matvecs": max_matvecs,
        "seed": seed if isinstance(seed, int) else None, "strategy": "two-pass",
        "matvec_dtype": str(op.dtype).removeprefix("torch."),
    }  # fmt: skip
    rows: list[torch.Tensor] = []
    values: list[float] = []
    deflated = _Deflated(products, rows, values)
    eps, norm, drift, runs = torch.finfo(work).eps, 0.0, 0.0, 0
    while True:
        left = max_matvecs - products.count - k
        if left < 4:
            break
        found = _run(deflated, generator, k, which, tol, left // 2, norm, eps, values)
        if found is None:
            nan = np.full(k, np.nan)
            vectors = torch.full((k, n), math.nan, dtype=torch.float64, device=op.device)
            settings["verify_dtype"] = reference.dtype_name()
            return Eigenpairs(nan, vectors, nan, math.nan, False, products.count,
                              0, settings, bound, bound / (n * size))  # fmt: skip
        theta, s, picks, alpha, state, done = found
        runs += 1
        if runs == 1:
            norm = float(np.abs(theta).max())
            deflated.c = {"LA": theta[0], "SA": theta[-1], "LM": 0.0}.get(
                which, (theta[0] + theta[-1]) / 2
            )
        if not len(picks):
            break
        picks = picks if runs == 1 else picks[:1]  # one at a time: k + 1 vectors held
        entering = theta[picks]
        keep = _select(values, entering, k, which, tol * norm)[0]
        new = _second_pass(deflated, generator, state, s[:, picks], alpha)
        drift = max(drift, new[0])
        rows[:] = [rows[i] for i in keep]  # the pairs that leave are freed
        values[:] = [values[i] for i in keep]
        for x in new[1]:
            for row in rows:
                x.sub_(row, alpha=float(torch.dot(row, x)))
            rows.append(x.div_(x.norm()))
        values.extend(float(v) for v in entering)
        del new
        if not done:
            break  # the budget ran out: verify what there is
    settings.update(runs=runs, pass2_drift=drift, memory_bound_bytes=bound)
    deflated.rows = []
    picked = len(rows)
    vectors64 = _verify(reference.get(), rows, which) if picked else None
    count64 = reference.count64
    settings["verify_dtype"] = reference.dtype_name()
    total = products.count + count64
    if vectors64 is None or picked < k:
        nan = np.full(k, np.nan)
        vectors = torch.full((k, n), math.nan, dtype=torch.float64, device=op.device)
        return Eigenpairs(nan, vectors, nan, norm, False, total, count64, settings,
                          bound, bound / (n * size))  # fmt: skip
    out_values, vectors, residuals = vectors64
    norm = max(norm, float(np.abs(out_values).max()))
    converged = bool(np.isfinite(residuals).all() and (residuals <= tol * norm).all())
    return Eigenpairs(out_values, vectors, residuals, norm, converged, total, count64,
                      settings, bound, bound / (n * size))  # fmt: skip


def _second_pass(deflated, generator, state, s: np.ndarray, alpha: np.ndarray):
    """Regenerates pass 1's basis from the same draw (the operator unchanged) and returns
    the largest change of a diagonal entry of ``T`` against pass 1 and the Ritz vectors
    ``V s`` (columns of ``s``)."""
    generator.set_state(state)
    products = deflated.products
    start = _normal((products.op.size,), generator, products.work, products.op.device)
    new = [torch.zeros_like(start) for _ in range(s.shape[1])]
    m = len(alpha)

    def visit(j: int, v: torch.Tensor) -> None:
        for i, x in enumerate(new):
            x.add_(v, alpha=float(s[j, i]))

    again, _, _ = _three_term(deflated, start, m, visit=visit, last_product=False)
    del start
    drift = float(np.abs(again[: m - 1] - alpha[: m - 1]).max()) if m > 1 else 0.0
    return drift, new
