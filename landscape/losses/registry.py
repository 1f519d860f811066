"""The built-in losses by name, and what goes with a loss: the count its sums are divided by,
its accuracy, whether it is a classification loss.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from .per_example import accuracy_sum, bce_sum, cross_entropy_sum, mse_sum, num_examples
from .tokens import (
    causal_lm_accuracy_sum,
    causal_lm_count,
    causal_lm_sum,
    token_accuracy_sum,
    token_ce_sum,
    token_count,
)

__all__ = [
    "LOSSES",
    "CountFn",
    "LossName",
    "MetricFn",
    "is_classification",
    "resolve_accuracy",
    "resolve_count",
    "resolve_loss",
]

LossName = Literal["cross_entropy", "mse", "bce", "causal_lm", "token_ce"]
MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
CountFn = Callable[[Any], int | torch.Tensor]

LOSSES: dict[str, MetricFn] = {
    "cross_entropy": cross_entropy_sum,
    "mse": mse_sum,
    "bce": bce_sum,
    "causal_lm": causal_lm_sum,
    "token_ce": token_ce_sum,
}
# What the means of the token losses divide by, and their accuracy; other losses count
# examples (:func:`num_examples`) and use :func:`accuracy_sum`.
_COUNTS: dict[str, CountFn] = {"causal_lm": causal_lm_count, "token_ce": token_count}
_ACCURACIES: dict[str, MetricFn] = {
    "causal_lm": causal_lm_accuracy_sum,
    "token_ce": token_accuracy_sum,
}


def resolve_loss(loss: str | MetricFn) -> tuple[str, MetricFn]:
    """``(name, fn)`` of a loss given by name, as an ``nn.Module`` loss (switched to
    ``reduction="sum"`` on a copy) or as a callable returning a batch sum.

    Raises:
        ValueError: an unknown name.
        TypeError: neither a name nor a callable.

    Example:
        >>> resolve_loss("mse")[0], resolve_loss(nn.CrossEntropyLoss())[1].reduction
        ('mse', 'sum')
    """
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)} or a callable, got {loss!r}")
        return loss, LOSSES[loss]
    if isinstance(loss, nn.Module) and hasattr(loss, "reduction"):
        summing = copy.copy(loss)
        summing.reduction = "sum"  # type: ignore[assignment]  # torch hints Module attributes as Tensor | Module
        return type(loss).__name__, summing
    if callable(loss):
        return getattr(loss, "__name__", type(loss).__name__), loss
    raise TypeError(f"loss must be a name or a callable, got {type(loss).__name__}")


def resolve_count(loss: str | MetricFn) -> CountFn:
    """What a loss's batch sums are counted in, as ``fn(targets) -> count``: non-ignored
    tokens for ``causal_lm`` and ``token_ce`` (a 0-dim tensor, so counting needs no sync),
    examples (:func:`num_examples`) otherwise.

    Example:
        >>> int(resolve_count("causal_lm")(torch.tensor([[1, 2, -100]])))
        1
    """
    return _COUNTS.get(loss, num_examples) if isinstance(loss, str) else num_examples


def resolve_accuracy(loss: str | MetricFn) -> MetricFn:
    """The accuracy that goes with a loss: next-token accuracy for ``causal_lm``, token
    accuracy for ``token_ce``, :func:`accuracy_sum` otherwise.

    Example:
        >>> resolve_accuracy("causal_lm").__name__, resolve_accuracy("bce").__name__
        ('causal_lm_accuracy_sum', 'accuracy_sum')
    """
    return _ACCURACIES.get(loss, accuracy_sum) if isinstance(loss, str) else accuracy_sum


def is_classification(loss: str | MetricFn) -> bool:
    """Whether a loss is a classification loss, for which accuracy is reported by default.

    Example:
        >>> is_classification("bce"), is_classification("mse")
        (True, False)
    """
    if isinstance(loss, str):
        return loss in ("cross_entropy", "bce", "causal_lm", "token_ce")
    return isinstance(loss, (nn.CrossEntropyLoss, nn.BCEWithLogitsLoss))
