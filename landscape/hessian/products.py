"""How a :class:`~landscape.hessian.HessianOperator` computes a batch's Hessian-vector
product: exactly by double backward (:class:`ExactProducts`), or by a central difference of
two gradients (:class:`DifferenceProducts`), which needs first derivatives only; and the
measured relative error of one against the other (:func:`measure_error`).

The difference ``(g(w + e v) - g(w - e v)) / (2 e)`` has a truncation error of order ``e**2``
(third derivatives) and a round-off error of order ``eps / e`` (the gradients' round-off), so
its step is about ``cbrt(eps)`` of the weights' scale (:func:`difference_step`): the error
is then of order ``eps**(2/3)``, about 2e-5 in float32 and 4e-11 in float64 on smooth
models. It is measured, never assumed: every result made with it records its measured error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..objective.calling import first_order_only
from ..params import unflatten

if TYPE_CHECKING:
    from .operator import HessianOperator

__all__ = [
    "ExactProducts",
    "DifferenceProducts",
    "difference_step",
    "step_scale",
    "STEP_FRACTION",
    "exact_or_reason",
    "measure_error",
    "PROBE_SEED",
]

#: Seed of the probe on which the error of ``fd`` products is measured: a standard normal
#: vector of ``torch.Generator().manual_seed(PROBE_SEED)`` in float64 on the CPU, cast to
#: the operator's dtype and device.
PROBE_SEED = 0

_FAILURES = (RuntimeError, NotImplementedError)  # torch.OutOfMemoryError is a RuntimeError


class _SavedBytes:
    """Counts the bytes of the distinct storages autograd saves while it is active."""

    def __init__(self, seen: set[tuple[int, int]]):
        self.seen, self.bytes = seen, 0

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key not in self.seen:
            self.seen.add(key)
            self.bytes += storage.nbytes()
        return t

    @staticmethod
    def unpack(t: torch.Tensor) -> torch.Tensor:
        return t


def _add(total: torch.Tensor, pieces: Sequence[torch.Tensor]) -> None:
    """Adds per-weight ``pieces`` to the flat ``total``, weight by weight (no float64 copy of
    the whole product)."""
    for piece, t in zip(total.split([t.numel() for t in pieces]), pieces, strict=True):
        piece += t.reshape(-1)


class ExactProducts:
    """Double backward through each batch's gradient graph; the graphs of the first batches
    are kept between products within ``max_graph_bytes`` (see
    :class:`~landscape.hessian.HessianOperator`)."""

    name = "exact"

    def __init__(self, op: HessianOperator, max_graph_bytes: int):
        self.op, self.max_graph_bytes = op, max_graph_bytes
        self._graphs: dict[int, tuple[torch.Tensor, ...]] = {}
        self._recompute: set[int] = set()
        self._saved: set[tuple[int, int]] = set()
        self.graph_bytes = 0

    def _grad(self, batch: Any) -> tuple[torch.Tensor, ...]:
        op = self.op
        sums, _ = op.objective.batch_sums(op._state(), batch, with_metrics=False)
        if not sums["loss"].requires_grad:  # the loss does not depend on these weights
            return tuple(torch.zeros_like(leaf) for leaf in op._leaves)
        return torch.autograd.grad(
            sums["loss"] / op.num_examples,
            op._leaves,
            create_graph=True,
            allow_unused=True,
            materialize_grads=True,
        )

    def _graph(self, index: int, batch: Any) -> tuple[tuple[torch.Tensor, ...], bool]:
        """Batch ``index``'s gradient graph, and whether it is kept for later products."""
        if index in self._graphs:
            return self._graphs[index], True
        if self.op._data is None or index in self._recompute:
            return self._grad(batch), False
        counter = _SavedBytes(self._saved)
        with torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack):
            grads = self._grad(batch)
        if index == 0 or self.graph_bytes + counter.bytes <= self.max_graph_bytes:
            self.graph_bytes += counter.bytes
            self._graphs[index] = grads
            return grads, True
        self._recompute.add(index)
        return grads, False

    def _product(
        self, grads: Sequence[torch.Tensor], parts: Sequence[torch.Tensor], retain: bool
    ) -> tuple[torch.Tensor, ...] | None:
        live = [i for i, g in enumerate(grads) if g.requires_grad]
        if not live:  # the loss is at most linear in these weights
            return None
        return torch.autograd.grad(
            [grads[i] for i in live],
            self.op._leaves,
            grad_outputs=[parts[i] for i in live],
            retain_graph=retain,
            allow_unused=True,
            materialize_grads=True,
        )

    def begin(self, vector: torch.Tensor) -> None:
        """Nothing to prepare for a product with ``vector``."""

    def add(self, index: int, batch: Any, parts: Sequence[torch.Tensor], total: torch.Tensor):
        """Adds batch ``index``'s product with ``parts`` (the vector, weight by weight) to
        ``total``."""
        grads, kept = self._graph(index, batch)
        if (hv := self._product(grads, parts, kept)) is not None:
            _add(total, hv)

    def once(self, batch: Any, parts: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """One batch's product, its graph not kept (the error probe)."""
        hv = self._product(self._grad(batch), parts, False)
        return [torch.zeros_like(p) for p in parts] if hv is None else list(hv)


#: The perturbation ``e v`` is ``STEP_FRACTION * cbrt(eps)`` of the weights' norm. Measured
#: relative errors (float32 / float64) on MLPs and a tiny GPT-2 like the tests': with 1 (the
#: textbook step) an MLP 2.8e-5 / 3.5e-11 but the GPT-2 1.8e-3 / 2.8e-9, whose LayerNorm
#: gains (1) inflate ``||w||`` over its matrices (0.02); with 0.25 at most 1.3e-4 / 2e-10
#: (the tests' models); with 0.03 round-off dominates (up to 9e-4 / 1e-9).
STEP_FRACTION = 0.25


def step_scale(dtype: torch.dtype, weight_norm: float) -> float:
    """``e ||v||`` of :func:`difference_step`: ``STEP_FRACTION * cbrt(eps) * max(||w||, 1)``.

    Example:
        >>> round(step_scale(torch.float64, 0.5) / 2.0 ** (-52 / 3), 12)  # max(0.5, 1) = 1
        0.25
    """
    return STEP_FRACTION * torch.finfo(dtype).eps ** (1 / 3) * max(weight_norm, 1.0)


def difference_step(dtype: torch.dtype, weight_norm: float, vector: torch.Tensor) -> torch.Tensor:
    """The step ``e`` of a central difference along ``vector``: ``STEP_FRACTION * cbrt(eps)
    * max(||w||, 1) / ||v||`` (``eps`` the machine epsilon of ``dtype``), a 0-dim tensor on
    the vector's device (nothing read by the host).

    Example:
        >>> e = difference_step(torch.float64, 4.0, torch.tensor([3.0, 4.0]))
        >>> round(float(e) / 2.0 ** (-52 / 3) / STEP_FRACTION, 6)  # 4 / 5
        0.8
    """
    scale = step_scale(dtype, weight_norm)
    norm = torch.linalg.vector_norm(vector.to(torch.float64))
    return (scale / norm).to(vector.dtype)


class DifferenceProducts:
    """``(g(w + e v) - g(w - e v)) / (2 e)`` per batch, ``g`` the gradient of the batch's loss
    sum over the number of examples, ``e`` from :func:`difference_step`. The gradients are
    first-order (no graph kept, no double backward), computed at fresh copies ``w +- e v``
    of the weights: the model and the operator's point are never written. The model's
    attention keeps the kernel the caller selected (``first_order_only`` of
    ``landscape.objective.calling``)."""

    name = "fd"

    def __init__(self, op: HessianOperator):
        self.op = op
        with torch.no_grad():
            squares = sum(leaf.detach().to(torch.float64).pow(2).sum() for leaf in op._leaves)
        self.weight_norm = math.sqrt(float(squares))
        self.graph_bytes = 0

    def _grad(self, batch: Any, weights: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        op = self.op
        leaves = [w.requires_grad_(True) for w in weights]
        with torch.enable_grad(), first_order_only():
            sums, _ = op.objective.batch_sums(op._state(leaves), batch, with_metrics=False)
            if not sums["loss"].requires_grad:
                return tuple(torch.zeros_like(leaf) for leaf in leaves)
            return torch.autograd.grad(
                sums["loss"] / op.num_examples, leaves, allow_unused=True, materialize_grads=True
            )

    def _difference(self, batch: Any, parts: Sequence[torch.Tensor], step: torch.Tensor):
        with torch.no_grad():
            ahead = [w.detach() + step * p for w, p in zip(self.op._leaves, parts, strict=True)]
            behind = [w.detach() - step * p for w, p in zip(self.op._leaves, parts, strict=True)]
        plus = self._grad(batch, ahead)
        del ahead
        minus = self._grad(batch, behind)
        with torch.no_grad():
            return [(a - b) / (2 * step) for a, b in zip(plus, minus, strict=True)]

    def step(self, vector: torch.Tensor) -> torch.Tensor:
        """The step for a flat ``vector`` (see :func:`difference_step`)."""
        return difference_step(self.op.dtype, self.weight_norm, vector)

    def add(self, index: int, batch: Any, parts: Sequence[torch.Tensor], total: torch.Tensor):
        """Adds one batch's product with ``parts`` to ``total`` (``index`` is not used: no
        graph is kept)."""
        _add(total, self._difference(batch, parts, self._step))

    def begin(self, vector: torch.Tensor) -> None:
        """Fixes the step of the product with ``vector`` for all its batches."""
        self._step = self.step(vector)

    def once(self, batch: Any, parts: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """One batch's product (the error probe)."""
        flat = torch.cat([p.reshape(-1) for p in parts])
        return self._difference(batch, parts, self.step(flat))


def probe(op: HessianOperator) -> torch.Tensor:
    """The probe of :func:`measure_error` (see :data:`PROBE_SEED`)."""
    g = torch.Generator().manual_seed(PROBE_SEED)
    vector = torch.randn(op.num_params, dtype=torch.float64, generator=g)
    return vector.to(op.device, op.dtype)


def exact_or_reason(
    op: HessianOperator, exact: ExactProducts
) -> tuple[list[torch.Tensor], list[torch.Tensor]] | str:
    """The probe (weight by weight) and its exact product on the first batch, or why that
    product cannot be computed (double backward unsupported, out of memory)."""
    parts = list(unflatten(probe(op), op._weights, op.names).values())
    try:
        return parts, exact.once(next(iter(op._batches())), parts)
    except _FAILURES as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return f"not measured: the exact product failed ({type(err).__name__}: {reason})"


def measure_error(
    op: HessianOperator,
    difference: DifferenceProducts,
    found: tuple[list[torch.Tensor], list[torch.Tensor]] | str,
) -> float | str:
    """``||H_fd v - H v|| / ||H v||`` on the first batch for the probe ``v`` (see
    :data:`PROBE_SEED`), both products in the operator's dtype, the norms in float64, from
    what :func:`exact_or_reason` ``found``; or a sentence saying why it was not measured."""
    if isinstance(found, str):
        return found
    parts, reference = found
    approx = difference.once(next(iter(op._batches())), parts)
    ref = torch.cat([t.reshape(-1) for t in reference]).to(torch.float64)
    diff = torch.cat([t.reshape(-1) for t in approx]).to(torch.float64) - ref
    scale = float(torch.linalg.vector_norm(ref))
    if not scale > 0:
        return "not measured: the exact product is zero on the probe"
    return float(torch.linalg.vector_norm(diff)) / scale
