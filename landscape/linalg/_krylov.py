"""The Krylov basis of the Lanczos solvers: one tensor per row, thick restarts in place."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import scipy.linalg
import torch

from .operators import Whole

_PIECE_BYTES = 2**24  # rows are gathered 16 MiB at a time for a product with the basis
_ETA = 1 / math.sqrt(2)  # DGKS: orthogonalize again when a norm drops below this fraction


class _Basis:
    """Rows kept one 1-D tensor each, so a row dropped is freed and nothing is allocated
    ahead; products with many rows run over column pieces gathered into one small matrix
    (at most ``_PIECE_BYTES``) at a time.

    ``host=True``: the rows live in host memory (pinned when the device is a GPU), and
    each piece is copied to the device for its product (the device holds the pieces, the
    product being orthogonalized and the row being multiplied, never the basis)."""

    def __init__(
        self,
        n: int,
        dtype: torch.dtype,
        device: torch.device,
        reduce: Callable[[torch.Tensor], torch.Tensor] = Whole.reduce,
        host: bool = False,
    ):
        self.n, self.dtype, self.device, self.reduce = n, dtype, device, reduce
        self.host = bool(host)
        self.home = torch.device("cpu") if host else device
        self._pin = self.host and device.type == "cuda"
        self.rows: list[torch.Tensor] = []

    def append(self, row: torch.Tensor) -> None:
        """Keeps ``row`` (a device tensor) as the last row: itself, or a copy in host
        memory."""
        if not self.host:
            self.rows.append(row)
            return
        kept = torch.empty(row.shape, dtype=row.dtype, device=self.home, pin_memory=self._pin)
        self.rows.append(kept.copy_(row))

    def row(self, i: int) -> torch.Tensor:
        """Row ``i`` on the device."""
        return self.rows[i].to(self.device, non_blocking=self._pin)

    def _pieces(self, count: int) -> Iterator[slice]:
        size = torch.empty((), dtype=self.dtype).element_size()
        width = max(1, _PIECE_BYTES // (max(count, 1) * size))
        for lo in range(0, self.n, width):
            yield slice(lo, min(lo + width, self.n))

    def _gather(self, index: list[int], piece: slice) -> torch.Tensor:
        gathered = torch.stack([self.rows[i][piece] for i in index])
        return gathered.to(self.device, non_blocking=self._pin)

    def project(self, w: torch.Tensor, index: list[int]) -> torch.Tensor:
        """Takes rows ``index`` off ``w`` in place (one classical Gram-Schmidt pass);
        returns the coefficients (on the device)."""
        coef = w.new_zeros(len(index))
        if not index:
            return coef
        for piece in self._pieces(len(index)):
            coef += self._gather(index, piece) @ w[piece]
        coef = self.reduce(coef)  # summed over the pieces of split vectors
        for piece in self._pieces(len(index)):
            w[piece].addmv_(self._gather(index, piece).T, coef, alpha=-1)
        return coef

    def combine(self, index: list[int], coefficients: np.ndarray, keep: list[int]) -> None:
        """In place: rows ``coefficients[:, j]^T V[index]`` for each column ``j`` (written
        over rows ``index``), then the rows ``keep``; every other row is dropped."""
        z = torch.as_tensor(coefficients.T, dtype=self.dtype, device=self.device)
        new = len(z)
        for piece in self._pieces(len(index) + new):
            mixed = z @ self._gather(index, piece)
            for i in range(new):
                self.rows[index[i]][piece].copy_(mixed[i])
        self.rows = [self.rows[i] for i in index[:new]] + [self.rows[j] for j in keep]


class _Lanczos:
    """Lanczos with full reorthogonalization over a band of pending rows, and thick restarts.

    The rows ``V`` are orthonormal. A step multiplies one pending row ``v_j`` (the oldest,
    unless told) and takes the other rows off the product: first the rows near ``j`` (the
    recurrence: the band before it, and after a restart every kept row), then one classical
    Gram-Schmidt pass over all rows, and a second only when that pass takes off more than
    ``1 - 1/sqrt(2)`` of the norm (Daniel, Gragg, Kaufman and Stewart, 1976). What is left,
    normalized, is a new pending row. ``T[i, j]`` holds the coefficients, so
    ``A v_j = sum_i T[i, j] v_i`` over the rows there when ``v_j`` was multiplied and the row
    it made; the upper triangle of ``T`` over the multiplied rows (in the order the rows were
    made) is the Rayleigh quotient, and the rows of ``T`` of the pending rows give each Ritz
    pair's residual norm without another product. A product without a new direction (an
    invariant subspace) makes a random row instead when there is a generator.

    A thick restart (Wu and Simon, 2000) replaces the multiplied rows by chosen Ritz vectors
    of theirs, in place, and keeps the pending rows: the relation above still holds. ``T``
    is on the host (it is small, and scipy diagonalizes it), so each step reads a few numbers
    back from the device.
    """

    def __init__(
        self,
        matvec: Callable[[torch.Tensor], torch.Tensor],
        start: list[torch.Tensor],
        *,
        generator: torch.Generator | None = None,
        space: Any = None,
        host_basis: bool = False,
    ):
        self._matvec, self._generator = matvec, generator
        self.space = Whole(start[0].shape[0]) if space is None else space
        self.n = self.space.dim  # the whole vectors' length (rows hold space.size entries)
        self.dtype, self.device = start[0].dtype, start[0].device
        self.basis = _Basis(self.space.size, self.dtype, self.device, self.space.reduce,
                            host=host_basis)  # fmt: skip
        self._tiny = 1e-10 if self.dtype == torch.float64 else 1e-5
        self.T = np.zeros((0, 0))
        self.done: list[bool] = []
        self.finite = True
        self._arrow = 0  # rows kept by the last restart: coupled to the next product
        for row in start:
            scale = self.space.norm(row)
            self._orthogonalize(row, list(range(self.size)))
            if not self._accept(row, scale, None):
                self.refill()

    @property
    def size(self) -> int:
        return len(self.basis.rows)

    @property
    def pending(self) -> list[int]:
        return [i for i, d in enumerate(self.done) if not d]

    @property
    def multiplied(self) -> list[int]:
        return [i for i, d in enumerate(self.done) if d]

    def _orthogonalize(self, w: torch.Tensor, local: list[int]) -> np.ndarray:
        """``w`` made orthogonal to every row, in place; the coefficients taken off."""
        total = np.zeros(self.size)
        if not self.size:
            return total
        if local:
            total[local] += self.basis.project(w, local).double().cpu().numpy()
        before = self.space.norm(w)
        every = list(range(self.size))
        for _ in range(2):
            total += self.basis.project(w, every).double().cpu().numpy()
            after = self.space.norm(w)
            if not after < _ETA * before:
                break
            before = after
        return total

    def _accept(self, w: torch.Tensor, scale: float, column: int | None) -> bool:
        norm = self.space.norm(w)
        if not norm > self._tiny * scale or self.size >= self.n:
            return False
        self.basis.append(w.div_(norm))
        self.done.append(False)
        if self.size > len(self.T):
            grown = np.zeros((2 * self.size + 8,) * 2)
            grown[: len(self.T), : len(self.T)] = self.T
            self.T = grown
        if column is not None:
            self.T[self.size - 1, column] = norm
        return True

    def refill(self) -> bool:
        """A random pending row orthogonal to the others, when there is a generator and room."""
        if self._generator is None or self.size >= self.n:
            return False
        for _ in range(3):
            r = self.space.normal(None, self._generator, self.dtype, self.device)
            scale = self.space.norm(r)
            self._orthogonalize(r, [])
            if self._accept(r, scale, None):
                return True
        return False

    def step(self, row: int | None = None) -> bool:
        """Multiplies pending row ``row`` (default the oldest); False when none is left or
        the product is not finite."""
        pending = self.pending
        if not pending:
            return False
        j = pending[0] if row is None else row
        x = self.basis.row(j)
        w = self._matvec(x)
        if w.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
            w = w.clone()  # an operator that returns its input (the identity)
        scale = self.space.norm(w)  # NaN or inf exactly when an entry is (or it overflows)
        if not math.isfinite(scale):
            self.finite = False
            return False
        band = len(pending)
        local = list(range(0 if self._arrow else max(j - band, 0), self.size))
        self._arrow = 0
        self.T[: self.size, j] = self._orthogonalize(w, local)
        self.done[j] = True
        if not self._accept(w, scale, j):
            self.refill()
        return bool(self.pending)

    def ritz(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ritz values of the multiplied rows (ascending), the eigenvectors of their ``T``
        (columns) and each pair's residual norm ``||A x - theta x||``."""
        done, pending = self.multiplied, self.pending
        upper = np.triu(self.T[np.ix_(done, done)])
        theta, vectors = scipy.linalg.eigh(upper + np.triu(upper, 1).T)
        estimates = np.linalg.norm(self.T[np.ix_(pending, done)] @ vectors, axis=0)
        return theta, vectors, estimates

    def restart(self, theta: np.ndarray, vectors: np.ndarray) -> None:
        """Keeps the Ritz vectors ``vectors`` (columns, values ``theta``) of the multiplied
        rows, and the pending rows, in place."""
        done, pending = self.multiplied, self.pending
        coupling = self.T[np.ix_(pending, done)] @ vectors
        self.basis.combine(done, vectors, pending)
        p = len(theta)
        self.T = np.zeros_like(self.T)
        self.T[np.arange(p), np.arange(p)] = theta
        self.T[p : p + len(pending), :p] = coupling
        self.done = [True] * p + [False] * len(pending)
        self._arrow = p
