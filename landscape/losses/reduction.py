"""A loss's reduction: declared (built-ins are sums), detected on a batch for a callable of
the user's, and a batch mean turned into a batch sum.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn

from .registry import MetricFn

__all__ = [
    "LOSS_REDUCTIONS",
    "LossReduction",
    "as_batch_sum",
    "declared_reduction",
    "detect_reduction",
]

LossReduction = Literal["auto", "sum", "mean"]

LOSS_REDUCTIONS = ("auto", "sum", "mean")


def declared_reduction(
    loss: str | MetricFn, reduction: LossReduction
) -> Literal["sum", "mean"] | None:
    """The reduction of ``loss``: ``"sum"`` for a built-in name or an ``nn.Module`` loss
    with a ``reduction`` attribute (summed by :func:`resolve_loss`), ``reduction`` as
    declared for other callables, ``None`` when it must be detected (``"auto"``).

    Raises:
        ValueError: an unknown ``reduction``, or ``"mean"`` for a loss that is summed.

    Example:
        >>> declared_reduction("mse", "auto"), declared_reduction(abs, "auto")
        ('sum', None)
    """
    if reduction not in LOSS_REDUCTIONS:
        raise ValueError(f"loss_reduction must be one of {LOSS_REDUCTIONS}, got {reduction!r}")
    summed = isinstance(loss, str) or (isinstance(loss, nn.Module) and hasattr(loss, "reduction"))
    if not summed:
        return None if reduction == "auto" else reduction
    if reduction == "mean":
        name = loss if isinstance(loss, str) else type(loss).__name__
        raise ValueError(
            f"loss {name!r} is evaluated as a batch sum already; loss_reduction='mean' is "
            "for a callable of your own that returns a batch mean"
        )
    return "sum"


def _halves(obj: Any, n: int) -> tuple[Any, Any]:
    """``obj`` (a tensor, or mappings, lists and tuples of them) cut in two along dim 0."""
    if isinstance(obj, torch.Tensor):
        return obj[: n // 2], obj[n // 2 :]
    if isinstance(obj, Mapping):
        pairs = {k: _halves(v, n) for k, v in obj.items()}
        return {k: a for k, (a, _) in pairs.items()}, {k: b for k, (_, b) in pairs.items()}
    if isinstance(obj, (list, tuple)):
        halves = [_halves(v, n) for v in obj]
        return type(obj)(a for a, _ in halves), type(obj)(b for _, b in halves)
    return obj, obj


def detect_reduction(
    fn: MetricFn, outputs: Any, targets: Any, *, name: str = "loss"
) -> Literal["sum", "mean"]:
    """Whether ``fn`` returns the batch sum or the batch mean, from its values on a batch
    and on the batch's two halves (sum: ``f(all) = f(h1) + f(h2)``; mean: ``n f(all) =
    n1 f(h1) + n2 f(h2)``), to half the digits of the values' dtype.

    Raises:
        ValueError: one example only, both conventions fit (a zero loss, say) or neither
            does; the message says how to declare the reduction instead.

    Example:
        >>> logits, labels = torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 1])
        >>> detect_reduction(torch.nn.functional.cross_entropy, logits, labels)
        'mean'
    """
    n = len(targets)
    declare = "declare it with loss_reduction='sum' or 'mean' (CLI: --loss-reduction sum|mean)"
    if n < 2:
        raise ValueError(
            f"cannot tell whether loss {name!r} returns the batch sum or mean from a batch of "
            f"{n} example; {declare}"
        )
    with torch.no_grad():
        parts = [fn(o, t) for o, t in zip(_halves(outputs, n), _halves(targets, n), strict=True)]
        whole, first, second = (
            torch.as_tensor(v).detach().to(torch.float64).reshape(())
            for v in (fn(outputs, targets), *parts)
        )
        dtype = torch.as_tensor(parts[0]).dtype
    n1, n2 = n // 2, n - n // 2
    rtol = torch.finfo(dtype if dtype.is_floating_point else torch.float32).eps ** 0.5

    def close(a: torch.Tensor, b: torch.Tensor) -> bool:
        return bool(abs(a - b) <= rtol * max(abs(a), abs(b)))

    is_sum = close(whole, first + second)
    is_mean = close(n * whole, n1 * first + n2 * second)
    if is_sum != is_mean:
        return "sum" if is_sum else "mean"
    values = f"f(batch) = {whole.item():.6g}, f(halves) = {first.item():.6g}, {second.item():.6g}"
    why = "both a batch sum and a batch mean fit" if is_sum else "neither fits"
    raise ValueError(
        f"cannot tell whether loss {name!r} returns the batch sum or mean: {why} ({values} "
        f"on a batch of {n}); expected a sum or mean of per-example losses; {declare}"
    )


def as_batch_sum(fn: MetricFn, reduction: Literal["sum", "mean"]) -> MetricFn:
    """``fn`` as a batch sum: itself for ``"sum"``, times the batch's example count for
    ``"mean"``.

    Example:
        >>> logits, labels = torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0])
        >>> mean_ce = torch.nn.functional.cross_entropy
        >>> round(float(as_batch_sum(mean_ce, "mean")(logits, labels)), 4)
        2.2539
    """
    if reduction == "sum":
        return fn

    def summed(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return fn(outputs, targets) * len(targets)

    return summed
