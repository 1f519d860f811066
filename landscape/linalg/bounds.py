"""The memory the Lanczos eigensolver states (``memory_bound_bytes``), and what the
planner reads before any product."""

from __future__ import annotations

from ._krylov import _PIECE_BYTES

__all__ = ["eigenpairs_bound", "host_basis_bytes"]


def _memory_bound(
    n: int, k: int, capacity: int, work: int, refine_capacity: int, host_basis: bool = False
) -> int:
    """Bytes of vectors held at once on the device: the basis (plus a random draw in
    float64; with ``host_basis``, the row multiplied and the product instead), the
    verification (the Ritz vectors and their float64 copies, then one product), and a
    refinement's float64 basis (or its two rows) and verification, whichever is largest."""
    rows = 2 if host_basis else capacity
    lanczos = (rows * work + 8) * n
    verify = max(k * (work + 8), 8 * (k + 1)) * n
    refined = 2 if host_basis else refine_capacity + 1
    refine = max(refined, 2 * k) * 8 * n if refine_capacity else 0
    return max(lanczos, verify, refine) + 2 * _PIECE_BYTES


def eigenpairs_bound(
    n: int,
    k: int,
    itemsize: int,
    *,
    max_basis: int | None = None,
    twin: bool = True,
    host_basis: bool = False,
) -> int:
    """The ``memory_bound_bytes`` :func:`~landscape.linalg.lanczos_eigenpairs` states for
    ``n``, ``k``, the operator's ``itemsize`` and ``max_basis`` (default ``3 k + 5``), one
    start vector and ``refine=True``; ``twin``: the operator has a separate float64
    version; ``host_basis``: the basis in host memory (the device's bytes only).

    Example:
        >>> eigenpairs_bound(10**6, 5, 4)  # a float64 refinement's 13 rows, and 32 MiB
        137554432
    """
    work = 8 if itemsize >= 8 else 4
    basis = 3 * k + 5 if max_basis is None else max_basis
    refine = max(2 * k + 2, basis // 2) if twin and work != 8 else basis
    return _memory_bound(n, k, min(basis, n), work, min(refine, n), host_basis)


def host_basis_bytes(n: int, k: int, itemsize: int, *, twin: bool = True) -> int:
    """The host memory of :func:`~landscape.linalg.lanczos_eigenpairs` with
    ``host_basis=True`` and the default basis: ``3 k + 5`` rows in the working dtype, or a
    float64 refinement's rows, whichever is larger.

    Example:
        >>> host_basis_bytes(10**6, 5, 4)  # a float64 refinement's 12 rows, above 20 float32
        96000000
    """
    work = 8 if itemsize >= 8 else 4
    basis = min(3 * k + 5, n)
    refine = min(max(2 * k + 2, basis // 2) if twin and work != 8 else basis, n)
    return max(basis * work, refine * 8) * n
