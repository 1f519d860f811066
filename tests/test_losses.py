"""Tests for landscape.losses: each built-in is the batch *sum* of the textbook loss, checked in
float64 against torch's own mean reductions and hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from landscape.losses import (
    accuracy_sum,
    bce_sum,
    cross_entropy_sum,
    is_classification,
    mse_sum,
    resolve_loss,
)


def draws(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_cross_entropy_sum_is_n_times_the_mean():
    logits, labels = draws(13, 5), torch.arange(13) % 5
    expected = 13 * F.cross_entropy(logits, labels).item()
    assert cross_entropy_sum(logits, labels).item() == pytest.approx(expected, rel=1e-14)
    by_hand = sum(
        math.log(sum(math.exp(v) for v in row)) - row[t]
        for row, t in zip(logits.tolist(), labels.tolist(), strict=True)
    )
    assert cross_entropy_sum(logits, labels).item() == pytest.approx(by_hand, rel=1e-12)


def test_mse_and_bce_sums():
    outputs, targets = draws(7, 3), draws(7, 3, seed=1)
    assert mse_sum(outputs, targets).item() == pytest.approx(
        7 * F.mse_loss(outputs, targets).item(), rel=1e-14
    )
    logits, bits = draws(9), (draws(9, seed=2) > 0).double()
    assert bce_sum(logits, bits).item() == pytest.approx(
        9 * F.binary_cross_entropy_with_logits(logits, bits).item(), rel=1e-14
    )


def test_accuracy_counts_argmax_and_sign():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 1.0, 5.0]])
    assert accuracy_sum(logits, torch.tensor([0, 1, 0])).item() == 2
    assert accuracy_sum(torch.tensor([0.3, -2.0, 1.0]), torch.tensor([1, 0, 0])).item() == 2


def test_resolve_loss_and_classification():
    assert resolve_loss("cross_entropy") == ("cross_entropy", cross_entropy_sum)
    module = nn.MSELoss()
    name, fn = resolve_loss(module)
    assert (name, fn.reduction, module.reduction) == ("MSELoss", "sum", "mean")
    with pytest.raises(ValueError, match="one of"):
        resolve_loss("hinge")
    with pytest.raises(TypeError, match="name or a callable"):
        resolve_loss(3)
    assert is_classification(nn.CrossEntropyLoss()) and not is_classification(mse_sum)
