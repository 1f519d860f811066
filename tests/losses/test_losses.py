"""Tests for landscape.losses: each built-in is the batch *sum* of the textbook loss, checked in
float64 against torch's own mean reductions and hand computations."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _host_reads import HostReads
from torch import nn

from landscape.directions import random_direction
from landscape.evaluate import Objective
from landscape.losses import (
    accuracy_sum,
    as_batch_sum,
    bce_sum,
    cross_entropy_sum,
    declared_reduction,
    detect_reduction,
    is_classification,
    mse_sum,
    per_example,
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
    assert abs(float((ours - torchs).detach())) < 1e-12
    (ours_grad,) = torch.autograd.grad(ours, logits)
    (torchs_grad,) = torch.autograd.grad(torchs, logits)
    torch.testing.assert_close(ours_grad, torchs_grad, rtol=0, atol=1e-14)
    soft = torch.softmax(torch.randn(40, 7, generator=g, dtype=torch.float64), dim=1)
    expected = torch.nn.functional.cross_entropy(logits, soft, reduction="sum")
    assert float(cross_entropy_sum(logits, soft).detach()) == float(expected.detach())


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


# ---------------------------------------------------------------- precision at low loss
def exact_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Summed cross-entropy of the given logits (ignored labels skipped) in numpy's long
    double (64-bit mantissa on x86; float64 where there is none): each example's loss as
    ``log1p(sum_{j != y} exp(z_j - z_y))``, which cancels nothing."""
    kept = (labels != -100).numpy()
    z = logits.detach().double().numpy().astype(np.longdouble)[kept]
    y = labels.numpy()[kept]
    rows = np.arange(len(y))
    shifted = z - z[rows, y][:, None]
    shifted[rows, y] = -np.inf
    return float(np.log1p(np.exp(shifted).sum(axis=1)).sum())


@pytest.fixture(scope="module")
def low_loss_mlps():
    """An MLP fitted to digits-like data (600 examples of 64 features in 10 classes), its last
    layer's weights and bias scaled to a mean cross-entropy of 2e-4 (found by bisection),
    and the same with the last layer three times larger, with a filter-normalized direction
    of each."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(600) % 10
    x = torch.randn(10, 64, generator=g)[y] + 2 * torch.randn(600, 64, generator=g)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(50):  # to 100% accuracy
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    with torch.no_grad():
        logits = model(x).double()
        low, high = 1.0, 100.0  # the mean loss of c * logits falls with c
        for _ in range(50):
            mid = (low + high) / 2
            low, high = (mid, high) if F.cross_entropy(mid * logits, y) > 2e-4 else (low, mid)
    checkpoints = []
    for factor in (high, 3 * high):
        scaled = copy.deepcopy(model)
        with torch.no_grad():
            scaled[2].weight *= factor
            scaled[2].bias *= factor
        checkpoints.append((scaled, random_direction(scaled, seed=0)))
    return x, y, checkpoints


def logits_at(model: nn.Module, direction: dict, step: float, x: torch.Tensor) -> torch.Tensor:
    state = {n: w + step * direction[n] for n, w in model.state_dict().items()}
    with torch.no_grad():
        return torch.func.functional_call(model, state, (x,))


@pytest.mark.parametrize("which, loss_range", [(0, (1e-4, 3e-4)), (1, (1e-12, 1e-6))])
def test_cross_entropy_and_its_changes_at_low_loss_to_1e_6(low_loss_mlps, which, loss_range):
    """Issue 25, item 3: the loss and its changes at 1e-3 and 1e-2 along a filter-normalized
    direction, to 1e-6 of the exact values of the same float32 logits. Version 0.2's float32
    ``logsumexp - z[y]`` had a relative error of 4.5e-4 at a loss of 2e-4 and got the change
    at 1e-3 2.4% wrong; at a loss of 8e-8, it rounded that change to 0. Through an Objective
    as well: its loss is that of the logits it saw."""
    x, y, checkpoints = low_loss_mlps
    model, direction = checkpoints[which]
    steps = (0.0, 1e-3, 1e-2)
    logits = [logits_at(model, direction, step, x) for step in steps]
    assert all(z.dtype == torch.float32 for z in logits)
    exact = [exact_cross_entropy(z, y) for z in logits]
    ours = [float(cross_entropy_sum(z, y)) for z in logits]
    assert loss_range[0] < exact[0] / len(y) < loss_range[1]
    assert ours[0] == pytest.approx(exact[0], rel=1e-6)
    for i in (1, 2):
        assert exact[i] != exact[0]
        assert ours[i] - ours[0] == pytest.approx(exact[i] - exact[0], rel=1e-6)

    seen = []

    def capture(outputs, targets):
        seen.append(outputs)
        return torch.zeros(())

    objective = Objective(model, (x, y), loss="cross_entropy", metrics={"seen": capture})
    moved = {n: w + 1e-3 * direction[n] for n, w in model.state_dict().items()}
    base_loss = objective()["loss"]
    rise = objective(moved)["loss"] - base_loss
    exact_rise = (exact_cross_entropy(seen[1], y) - exact_cross_entropy(seen[0], y)) / len(y)
    assert rise == pytest.approx(exact_rise, rel=1e-6)


def test_bce_at_low_loss_to_1e_6():
    """Binary cross-entropy of confident logits: float32 rounds ``z + log1p(exp(-z))`` of
    a label 0 to 0 or to a multiple of its last bit."""
    g = torch.Generator().manual_seed(0)
    bits = torch.randint(0, 2, (500,), generator=g).float()
    logits = (2 * bits - 1) * (15 + 5 * torch.rand(500, generator=g))
    exact = float(np.log1p(np.exp(-np.abs(logits.double().numpy().astype(np.longdouble)))).sum())
    assert float(bce_sum(logits, bits)) == pytest.approx(exact, rel=1e-6)


def test_token_losses_are_as_precise_as_torchs_float32_cross_entropy():
    """Language-model-like logits (large offsets per position, the label ahead by 14 to 18):
    the token losses' error against the exact sum is at most that of ``F.cross_entropy`` in
    float32 (0.2's ``logsumexp - z[y]`` in float32 was 3 times worse here)."""
    g = torch.Generator().manual_seed(0)
    batch, tokens, vocabulary = 4, 32, 256
    labels = torch.randint(0, vocabulary, (batch, tokens), generator=g)
    logits = 2 * torch.randn(batch, tokens, vocabulary, generator=g)
    ahead = 14 + 4 * torch.rand(batch, tokens, 1, generator=g)
    logits.scatter_add_(2, labels.unsqueeze(-1), ahead)
    logits += 100 * torch.randn(batch, tokens, 1, generator=g)
    labels[0, :5] = -100
    flat_logits, flat_labels = logits.reshape(-1, vocabulary), labels.reshape(-1)
    exact = exact_cross_entropy(flat_logits, flat_labels)
    torchs = float(F.cross_entropy(flat_logits, flat_labels, reduction="sum"))
    ours = float(resolve_loss("token_ce")[1](logits, labels))
    assert abs(ours - exact) <= abs(torchs - exact) + 1e-7 * exact
    shifted = torch.cat([labels[:, 1:], torch.full((batch, 1), -100)], dim=1)
    causal = float(resolve_loss("causal_lm")[1](logits, labels))
    exact_causal = exact_cross_entropy(flat_logits, shifted.reshape(-1))
    assert causal == pytest.approx(exact_causal, rel=1e-4)


# ---------------------------------------------------------------- pieces, derivatives, reads
CASES = {
    "cross_entropy": lambda g: (torch.randn(6, 5, 3, generator=g), torch.randint(0, 5, (6, 3))),
    "bce": lambda g: (torch.randn(6, generator=g), torch.randint(0, 2, (6,)).float()),
    "mse": lambda g: (torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)),
    "causal_lm": lambda g: (torch.randn(2, 5, 7, generator=g), torch.randint(0, 7, (2, 5))),
    "token_ce": lambda g: (torch.randn(2, 5, 7, generator=g), torch.randint(0, 7, (2, 5))),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_losses_in_pieces_equal_one_piece_and_read_nothing(name, monkeypatch):
    """Logits cut into pieces of one row (a few bytes each) give the same sum and the same
    first and second derivatives, in float32 for float32 logits, and no value is read by the
    host (a sync on a GPU), ignored labels included."""
    g = torch.Generator().manual_seed(0)
    outputs, targets = CASES[name](g)
    if not targets.is_floating_point():
        targets.view(-1)[::4] = -100 if name != "bce" else 0
    fn = resolve_loss(name)[1]

    def value_and_derivatives():
        z = outputs.clone().requires_grad_(True)
        total = fn(z, targets)
        (grad,) = torch.autograd.grad(total, z, create_graph=True)
        (hvp,) = torch.autograd.grad((grad * torch.ones_like(grad)).sum(), z)
        return total.detach(), grad.detach(), hvp

    whole = value_and_derivatives()
    monkeypatch.setattr(per_example, "CHUNK_BYTES", 1)
    with HostReads() as counter:
        pieces = value_and_derivatives()
    assert counter.count == 0
    assert whole[0].dtype == (torch.float32 if name == "mse" else torch.float64)
    assert whole[1].dtype == whole[2].dtype == torch.float32
    for a, b in zip(whole, pieces, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12 if a.dtype == torch.float64 else 1e-6, atol=0)


def test_cross_entropy_of_few_classes_and_many_examples():
    """Logits of 10 classes for 2048 examples are taken as (1, classes, examples) on a CPU:
    the same sum and derivatives as rows of classes, and under ``vmap`` (K points per pass)
    the same sums as one at a time."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2048, 10, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 10, (2048,), generator=g)
    labels[::7] = -100
    ours, torchs = (
        cross_entropy_sum(logits, labels),
        F.cross_entropy(logits, labels, reduction="sum"),
    )
    assert float(ours.detach()) == pytest.approx(float(torchs.detach()), rel=1e-14)
    ours_grad, torchs_grad = (
        torch.autograd.grad(v, logits, create_graph=True)[0] for v in (ours, torchs)
    )
    torch.testing.assert_close(ours_grad, torchs_grad, rtol=0, atol=1e-15)
    hvps = (torch.autograd.grad(grad.sum(), logits)[0] for grad in (ours_grad, torchs_grad))
    torch.testing.assert_close(*hvps, rtol=0, atol=1e-14)
    stacked = torch.stack([logits.detach(), 2 * logits.detach()])
    mapped = torch.func.vmap(lambda z: cross_entropy_sum(z, labels))(stacked)
    torch.testing.assert_close(mapped, torch.stack([cross_entropy_sum(z, labels) for z in stacked]))
