"""The memory bounds the solvers' docstrings state, checked on a float32 operator.

Every tensor of at least ``n`` entries that an operation makes during a call is tracked
until its storage is freed (weak references), so the peak of what was alive at once is
known in vectors of ``n``, float64 and working dtype apart. Version 0.2 kept the trace's
diagonal estimate and products, and up to five blocks of the verification, in float64, and
held two bases of the quadrature at once.
"""

from __future__ import annotations

import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from landscape.linalg import (
    MatvecOperator,
    estimate_trace,
    lanczos_eigenpairs,
    lanczos_quadrature,
    operators,
)

N = 3000


class LiveVectors(TorchDispatchMode):
    """The peak number of vectors of ``n`` entries alive at once, float64 and the rest
    apart (a block of ``k`` vectors counts ``k``), over the storages that operations run in
    the block make: inputs made before it are not counted."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n
        self.live: dict[int, tuple[bool, float]] = {}
        self.now = {True: 0.0, False: 0.0}
        self.peak = {True: 0.0, False: 0.0}

    def _free(self, key: int) -> None:
        double, vectors = self.live.pop(key)
        self.now[double] -= vectors

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.numel() < self.n:
                continue
            storage = t.untyped_storage()
            key = id(storage)
            if key not in self.live:
                double = t.dtype == torch.float64
                vectors = storage.nbytes() / (t.element_size() * self.n)
                self.live[key] = (double, vectors)
                self.now[double] += vectors
                self.peak[double] = max(self.peak[double], self.now[double])
                weakref.finalize(storage, self._free, key)
        return out


def peaks(call) -> tuple[float, float, object]:
    """``(working-dtype vectors, float64 vectors, result)`` at the peak of ``call()``."""
    with LiveVectors(N) as live:
        result = call()
    return live.peak[False], live.peak[True], result


def diagonal(perturbation: float = 0.0) -> MatvecOperator:
    """A float32 operator: a diagonal matrix, plus ``perturbation (u v^T + v u^T)`` if given;
    its float64 twin is the diagonal alone. Perturbed by 1e-2, as float32 Hessian products
    near a minimum are biased, its float32 products stall and Lanczos refines in float64."""
    exact = torch.linspace(-1.0, 5.0, N, dtype=torch.float64)
    exact[-3:] = torch.tensor([9.99, 9.995, 10.0], dtype=torch.float64)
    u, v = torch.randn(2, N, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    d, u, v = exact.float(), (u / u.norm()).float(), (v / v.norm()).float()

    def matvec(x: torch.Tensor) -> torch.Tensor:
        if not perturbation:
            return d * x
        return d * x + perturbation * (u * (v @ x) + v * (u @ x))

    return MatvecOperator(matvec, N, torch.float32, matvec64=lambda x: exact * x)


@pytest.fixture(autouse=True)
def small_pieces(monkeypatch):
    """Dot products cast pieces of 100 entries to float64, so that a float64 copy of a whole
    vector would show."""
    monkeypatch.setattr(operators, "_PIECE", 100)


# What the operators need for a product: one vector of the working dtype (four for the
# perturbed one), and for the float64 twin two float64 vectors (its input cast and its
# output). One float64 vector more is a random draw on the CPU.


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
@pytest.mark.parametrize("num_probes", [6, 90])
def test_trace_holds_2s_plus_6_vectors_and_no_float64_one(method, num_probes):
    op = diagonal()
    work, double, _ = peaks(lambda: estimate_trace(op, num_probes=num_probes, method=method))
    sketch = num_probes // 3 if method == "hutch++" else 0
    assert work <= 2 * sketch + 6 + 1
    assert double <= 1


@pytest.mark.parametrize("num_steps", [5, 32, 80])
def test_quadrature_holds_one_probe_basis(num_steps):
    op = diagonal()
    work, double, _ = peaks(lambda: lanczos_quadrature(op, num_probes=3, num_steps=num_steps))
    assert work <= num_steps + 32 + 6 + 1
    assert double <= 1


@pytest.mark.parametrize("k", [1, 3])
def test_eigenpairs_keep_the_basis_in_float32_and_verify_with_3k_float64_vectors(k):
    max_matvecs = 100
    work, double, _ = peaks(
        lambda: lanczos_eigenpairs(diagonal(), k, max_matvecs=max_matvecs, refine=False)
    )
    assert work <= max_matvecs + k + 31 + 8 * k + 1
    assert double <= 3 * k + 2 + 1


@pytest.mark.parametrize("k", [1, 3])
def test_a_refinement_holds_its_float64_basis_and_the_pairs_found_first(k):
    op, max_matvecs = diagonal(1e-2), 150
    work, double, result = peaks(
        lambda: lanczos_eigenpairs(op, k, max_matvecs=max_matvecs, tol=1e-6)
    )
    assert result.converged
    assert not lanczos_eigenpairs(op, k, max_matvecs=max_matvecs, tol=1e-6, refine=False).converged
    refined = result.num_matvecs64  # the refinement's products, and verifications
    assert work <= max_matvecs + k + 31 + 8 * k + 4
    assert double <= refined + k + 31 + 8 * k + k + 2 + 1
