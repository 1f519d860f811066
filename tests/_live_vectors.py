"""Memory instruments of the tests: the peak number of ``n``-vectors alive at once, and a
float32 test operator; the ``small_pieces`` fixture is in ``conftest.py``."""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from landscape.linalg import MatvecOperator

N = 3000


class LiveVectors(TorchDispatchMode):
    """The peak number of vectors of ``n`` entries alive at once, float64 and the rest
    apart (a block of ``k`` vectors counts ``k``), over the storages that operations run in
    the block make: inputs made before it are not counted."""

    def __init__(self, n: int, least: int | None = None, exclude=()):
        super().__init__()
        self.n, self.least = n, n if least is None else least
        # storages made before the block (a model's weights) that views made in it share
        self.exclude = {id(t.untyped_storage()) for t in exclude}
        self.live: dict[int, tuple[bool, float, int]] = {}
        self.now = {True: 0.0, False: 0.0}
        self.peak = {True: 0.0, False: 0.0}
        self.bytes = self.peak_bytes = 0  # all dtypes together

    def _free(self, key: int) -> None:
        double, vectors, nbytes = self.live.pop(key)
        self.now[double] -= vectors
        self.bytes -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.numel() < self.least:
                continue
            storage = t.untyped_storage()
            key = id(storage)
            if key not in self.live and key not in self.exclude:
                double = t.dtype == torch.float64
                vectors = storage.nbytes() / (t.element_size() * self.n)
                self.live[key] = (double, vectors, storage.nbytes())
                self.now[double] += vectors
                self.peak[double] = max(self.peak[double], self.now[double])
                self.bytes += storage.nbytes()
                self.peak_bytes = max(self.peak_bytes, self.bytes)
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
