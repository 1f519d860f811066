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
    as_batch_sum,
    bce_sum,
    cross_entropy_sum,
    declared_reduction,
    detect_reduction,
    is_classification,
    mse_sum,
    resolve_accuracy,
    resolve_count,
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


def test_cross_entropy_sum_equals_torchs_with_ignored_targets_and_soft_labels():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(40, 7, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 7, (40,), generator=g)
    labels[::5] = -100  # ignore_index: adds nothing
    ours = cross_entropy_sum(logits, labels)
    torchs = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
    assert abs(float(ours - torchs)) < 1e-12
    (ours_grad,) = torch.autograd.grad(ours, logits)
    (torchs_grad,) = torch.autograd.grad(torchs, logits)
    torch.testing.assert_close(ours_grad, torchs_grad, rtol=0, atol=1e-14)
    soft = torch.softmax(torch.randn(40, 7, generator=g, dtype=torch.float64), dim=1)
    expected = torch.nn.functional.cross_entropy(logits, soft, reduction="sum")
    assert float(cross_entropy_sum(logits, soft)) == float(expected)


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


# ---------------------------------------------------------------- a user's sum or mean
def test_detect_reduction_tells_a_sum_from_a_mean():
    logits, labels = draws(13, 5), torch.arange(13) % 5
    assert detect_reduction(F.cross_entropy, logits, labels) == "mean"
    assert detect_reduction(cross_entropy_sum, logits, labels) == "sum"
    assert detect_reduction(nn.MSELoss(), logits, draws(13, 5, seed=1)) == "mean"
    tokens = draws(4, 5, 6), torch.arange(24).reshape(4, 6) % 5  # per-token mean: a mean
    assert detect_reduction(F.cross_entropy, *tokens) == "mean"
    two = logits[:2].float(), labels[:2]  # float32 values, the smallest batch that tells
    assert detect_reduction(lambda o, t: F.cross_entropy(o, t, reduction="sum"), *two) == "sum"


@pytest.mark.parametrize(
    "fn, n, why",
    [
        (F.cross_entropy, 1, "a batch of 1 example"),
        (lambda o, t: 0 * o.sum(), 8, "both a batch sum and a batch mean fit"),
        (lambda o, t: cross_entropy_sum(o, t).sqrt(), 8, "neither fits"),
        (lambda o, t: F.cross_entropy(o, t, ignore_index=0), 8, "neither fits"),
    ],
)
def test_detect_reduction_refuses_when_it_cannot_tell(fn, n, why):
    logits, labels = draws(n, 3), torch.arange(n) % 3
    with pytest.raises(ValueError, match=f"{why}.*loss_reduction='sum' or 'mean'") as err:
        detect_reduction(fn, logits, labels, name="mine")
    assert "'mine'" in str(err.value) and "\n" not in str(err.value)


def test_declared_reduction_and_as_batch_sum():
    assert declared_reduction("mse", "auto") == declared_reduction("mse", "sum") == "sum"
    assert declared_reduction(nn.CrossEntropyLoss(), "auto") == "sum"
    assert declared_reduction(F.cross_entropy, "auto") is None
    assert declared_reduction(F.cross_entropy, "mean") == "mean"
    with pytest.raises(ValueError, match="batch sum already"):
        declared_reduction("cross_entropy", "mean")
    with pytest.raises(ValueError, match="one of"):
        declared_reduction(F.cross_entropy, "average")
    logits, labels = draws(13, 5), torch.arange(13) % 5
    summed = as_batch_sum(F.cross_entropy, "mean")(logits, labels)
    assert summed.item() == pytest.approx(cross_entropy_sum(logits, labels).item(), rel=1e-14)
    assert as_batch_sum(cross_entropy_sum, "sum") is cross_entropy_sum


def test_token_losses_are_sums_over_the_kept_tokens_in_float64():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=g, dtype=torch.float64)
    ids = torch.randint(0, 7, (2, 5), generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    labels = ids.masked_fill(mask == 0, -100)
    labels[0, 2] = -100
    kept = labels[:, 1:] != -100
    causal = F.cross_entropy(logits[:, :-1][kept], labels[:, 1:][kept], reduction="sum")
    assert resolve_loss("causal_lm")[1](logits, labels).item() == pytest.approx(
        causal.item(), abs=1e-12
    )
    assert int(resolve_count("causal_lm")(labels)) == int(kept.sum()) == 5
    aligned = F.cross_entropy(logits.reshape(-1, 7), labels.reshape(-1), reduction="sum")
    assert resolve_loss("token_ce")[1](logits, labels).item() == pytest.approx(
        aligned.item(), abs=1e-12
    )
    assert int(resolve_count("token_ce")(labels)) == 7
    # without labels: input_ids, the padding ignored
    inputs = {"input_ids": ids, "attention_mask": mask}
    from_inputs = resolve_loss("causal_lm")[1](logits, inputs)
    labels[0, 2] = ids[0, 2]
    assert from_inputs.item() == pytest.approx(resolve_loss("causal_lm")[1](logits, labels).item())
    hits = (logits[:, :-1].argmax(-1) == labels[:, 1:]).sum()
    assert int(resolve_accuracy("causal_lm")(logits, labels)) == int(hits)
    assert resolve_loss("causal_lm")[1](logits.float(), labels).dtype == torch.float64
    assert is_classification("causal_lm") and resolve_count("mse")(labels) == 2
    with pytest.raises(ValueError, match="do not match labels"):
        resolve_loss("token_ce")[1](logits, labels[:, 1:])
    with pytest.raises(TypeError, match="input_ids"):
        resolve_loss("causal_lm")[1](logits, {"attention_mask": mask})
