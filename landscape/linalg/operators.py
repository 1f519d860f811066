"""Symmetric linear operators: the protocol the solvers take, a matrix wrapper, helpers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from .._seeding import draw_dtype


@runtime_checkable
class SymmetricOperator(Protocol):
    """A symmetric linear operator: what the solvers of this module take.

    Attributes (read-only: a property or a frozen field satisfies them):
        size: ``n``, the length of the vectors it acts on.
        dtype: floating dtype of its vectors; device: their device.
    """

    @property
    def size(self) -> int: ...
    @property
    def dtype(self) -> torch.dtype: ...
    @property
    def device(self) -> torch.device: ...

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        """``A @ x`` for a 1-D tensor of :attr:`dtype` on :attr:`device`, same kind out."""
        ...


@dataclass(frozen=True, eq=False)
class MatvecOperator:
    """A :class:`SymmetricOperator` from a product function.

    Args:
        matvec: ``x -> A @ x`` on 1-D tensors of ``dtype`` on ``device``.
        size: ``n``.
        dtype, device: of the vectors.
        matvec64: the same product computed in float64 (float64 vectors in and out), used
            by :meth:`float64`; ``None`` when there is none.

    Example:
        >>> op = MatvecOperator(lambda x: 2 * x, 3)
        >>> op.matvec(torch.ones(3, dtype=torch.float64))
        tensor([2., 2., 2.], dtype=torch.float64)
    """

    matvec: Callable[[torch.Tensor], torch.Tensor]
    size: int
    dtype: torch.dtype = torch.float64
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    matvec64: Callable[[torch.Tensor], torch.Tensor] | None = None

    def float64(self) -> MatvecOperator:
        """The operator computed in float64: itself when it is float64 already or has no
        ``matvec64`` (then results are verified in its own dtype, and say so)."""
        if self.dtype == torch.float64 or self.matvec64 is None:
            return self
        return MatvecOperator(self.matvec64, self.size, torch.float64, self.device)


def dense_operator(
    matrix: torch.Tensor | np.ndarray, *, dtype: torch.dtype | None = None
) -> MatvecOperator:
    """A symmetric matrix as an operator (products in ``dtype``, verification in float64).

    Args:
        matrix: a square symmetric matrix (tensor or array).
        dtype: the dtype of the products; default the matrix's.

    Returns:
        a :class:`MatvecOperator` on the matrix's device whose :meth:`~MatvecOperator.float64`
        multiplies by the matrix in float64.

    Raises:
        ValueError: the matrix is not square, or not symmetric.
        TypeError: ``dtype`` is not floating.

    Example:
        >>> dense_operator(np.eye(3)).size
        3
    """
    a = torch.as_tensor(matrix)
    if a.dim() != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {tuple(a.shape)}")
    a64 = a.to(torch.float64)
    asym = float((a64 - a64.T).abs().max()) if a.numel() else 0.0
    if asym > 1e-12 * max(float(a64.abs().max()), 1e-300):
        raise ValueError(f"expected a symmetric matrix, got max |A - A^T| = {asym:.3g}")
    dtype = a.dtype if dtype is None else dtype
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    work = a64.to(dtype)
    return MatvecOperator(lambda x: work @ x, a.shape[0], dtype, a.device, lambda x: a64 @ x)


def _check_operator(op: Any) -> None:
    if not isinstance(op, SymmetricOperator) or not callable(op.matvec):
        raise TypeError(
            "expected a symmetric operator (attributes matvec, size, dtype, device), "
            f"got {type(op).__name__}"
        )
    if not isinstance(op.size, int) or op.size < 1:
        raise ValueError(f"operator size must be a positive int, got {op.size!r}")
    if not (isinstance(op.dtype, torch.dtype) and op.dtype.is_floating_point):
        raise TypeError(f"operator dtype must be a floating torch.dtype, got {op.dtype!r}")


def _reference(op: SymmetricOperator) -> SymmetricOperator:
    """The operator in float64 (``op.float64()`` where it has one), else ``op`` itself."""
    make = getattr(op, "float64", None)
    return op if op.dtype == torch.float64 or make is None else make()


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype vectors are kept in: the operator's, at least float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


_PIECE = 2**20  # entries cast to float64 at a time by _dot64


def _dot64(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a . b`` of two vectors in float64, as a 0-dim tensor on their device (not read by
    the host); cast in pieces of ``2**20`` entries, so no float64 copy of a whole vector
    is made."""
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for lo in range(0, len(a), _PIECE):
        total += torch.dot(a[lo : lo + _PIECE].double(), b[lo : lo + _PIECE].double())
    return total


#: Called once after each matrix-vector product (progress bars count them).
Callback = Callable[[], Any] | None


class _Products:
    """``op.matvec`` on rows of the working dtype, counting the products (and calling
    ``callback`` after each one)."""

    def __init__(self, op: SymmetricOperator, work: torch.dtype, callback: Callback = None):
        self.op, self.work, self.count, self.callback = op, work, 0, callback

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.count += 1
        out = self.op.matvec(x.to(self.op.device, self.op.dtype)).to(self.work)
        if self.callback is not None:
            self.callback()
        return out


class _Reference:
    """The products that verify a solver's pairs: those of ``op.float64()`` (built on first
    use, so that an operator's float64 twin is not held while the working-dtype run is),
    or, where that is ``op`` itself, the working products."""

    def __init__(self, products: _Products):
        self.products = products
        self._built: _Products | None = None
        op = products.op
        #: whether the reference may be a separate float64 operator
        self.twin = op.dtype != torch.float64 and callable(getattr(op, "float64", None))

    def get(self) -> _Products:
        if self._built is None:
            op, products = self.products.op, self.products
            ref = _reference(op)
            self._built = (
                products if ref is op else _Products(ref, torch.float64, products.callback)
            )
        return self._built

    @property
    def count64(self) -> int:
        """Products of the separate float64 operator (0 where there is none)."""
        built = self._built
        return 0 if built is None or built is self.products else built.count

    def dtype_name(self) -> str:
        return str(self.get().op.dtype).removeprefix("torch.")


class Whole:
    """How the solvers treat an operator's vectors: whole, on this process (every operator's,
    unless it has an attribute ``space`` saying otherwise, such as the Hessian of a sharded
    model, whose vectors are this rank's pieces of the parameters).

    A ``space`` has ``size`` (entries of a vector held here), ``dim`` (entries of the whole
    vector), ``reduce(partial)`` (partial dot products, a tensor, summed over the pieces),
    ``norm(x)`` (the whole vector's norm, a float) and the random draws ``normal(rows,
    generator, dtype, device)`` (``rows`` vectors, or one 1-D vector for ``None``) and
    ``rademacher(generator, dtype, device)``. Solvers that take a split space route every
    dot product and norm through it; the others refuse one (:func:`_check_whole`).

    Example:
        >>> Whole(3).norm(torch.tensor([3.0, 4.0, 0.0]))
        5.0
    """

    def __init__(self, n: int):
        self.size = self.dim = n

    @staticmethod
    def reduce(partial: torch.Tensor) -> torch.Tensor:
        return partial

    @staticmethod
    def norm(x: torch.Tensor) -> float:
        return float(x.norm())

    def normal(self, rows: int | None, generator: torch.Generator, dtype: torch.dtype, device):
        shape = (self.size,) if rows is None else (rows, self.size)
        return _normal(shape, generator, dtype, device)

    def rademacher(self, generator: torch.Generator, dtype: torch.dtype, device) -> torch.Tensor:
        return _rademacher(self.size, generator, dtype, device)


def space_of(op: Any) -> Any:
    """``op.space`` where the operator has one, else :class:`Whole` vectors of ``op.size``."""
    space = getattr(op, "space", None)
    return Whole(op.size) if space is None else space


def _check_whole(op: Any, solver: str) -> None:
    """Refuse an operator whose vectors are split into pieces (``op.space``) in a solver
    that holds whole vectors."""
    if getattr(op, "space", None) is not None:
        raise ValueError(
            f"expected an operator with whole vectors for {solver}, got one whose vectors are "
            "split over ranks (a sharded model's Hessian); use lanczos_eigenpairs or "
            "estimate_trace(method='hutchinson')"
        )


def _rademacher(n: int, generator: torch.Generator, dtype: torch.dtype, device) -> torch.Tensor:
    """A vector of random signs, drawn on the generator's device (:mod:`landscape._seeding`)."""
    draw = draw_dtype(generator, dtype)
    signs = torch.randint(0, 2, (n,), generator=generator, dtype=draw, device=generator.device)
    return signs.mul_(2).sub_(1).to(device, dtype)


def _normal(
    shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype, device
) -> torch.Tensor:
    """Standard normal entries, drawn on the generator's device (:mod:`landscape._seeding`)."""
    draw = draw_dtype(generator, dtype)
    x = torch.randn(shape, generator=generator, dtype=draw, device=generator.device)
    return x.to(device, dtype)
