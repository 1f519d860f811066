"""Tests for landscape.evaluate: exact means, no change to the model, K points per pass,
reduced precision, fallbacks.

Tolerances (the promise in the docs): with K > 1 points per pass the values equal the
one-point path to 1e-5 relative in float32 (batched kernels sum in another order; the
perturbed states themselves are equal bit for bit) and to 1e-12 in float64. bf16 is
within 2e-2 relative of fp32 on these small models (typically 1e-4 to 1e-3).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from landscape import distributed
from landscape._batched import (
    auto_points_per_pass,
    move_directions,
    precision_context,
    stack_points,
)
from landscape.directions import random_directions
from landscape.evaluate import Objective
from landscape.params import axpy

F32 = {"rtol": 1e-5, "atol": 1e-6}
F64 = {"rtol": 1e-12, "atol": 1e-12}
APPROX64 = {"rel": 1e-12, "abs": 1e-12}
BF16_RTOL = 2e-2


def mlp(dtype=torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4)).to(dtype)


def cnn(dtype=torch.float32) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Flatten(),
        nn.Linear(6 * 5 * 5, 4),
    ).to(dtype)
    with torch.no_grad():  # non-trivial running statistics
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 1.5)
    return model.eval()


def data(shape, n=53, dtype=torch.float32, classes=4):
    g = torch.Generator().manual_seed(1)
    inputs = torch.randn(n, *shape, generator=g, dtype=dtype)
    return inputs, torch.randint(0, classes, (n,), generator=g)


COORDS = np.array([[0.0, 0.0], [0.5, -0.25], [-1.0, 0.75], [0.1, 0.9], [2.0, -2.0]])


# ---------------------------------------------------------------- exact means
def test_ragged_batches_give_the_exact_mean_of_one_batch():
    model = mlp(torch.float64)
    xs, ys = data((6,), n=103, dtype=torch.float64)
    ragged = [(xs[a:b], ys[a:b]) for a, b in [(0, 7), (7, 50), (50, 51), (51, 103)]]
    got = Objective(model, ragged)()
    one = Objective(model, (xs, ys), batch_size=103)()
    with torch.no_grad():
        out = model(xs)
    assert got["loss"] == pytest.approx(F.cross_entropy(out, ys).item(), **APPROX64)
    assert got["accuracy"] == pytest.approx(
        (out.argmax(1) == ys).double().mean().item(), **APPROX64
    )
    for name in one:
        assert got[name] == pytest.approx(one[name], **APPROX64)


def test_mse_is_the_mean_over_the_set_of_each_examples_mean_squared_error():
    torch.manual_seed(0)
    model = nn.Linear(5, 3).double()
    xs, ys = torch.randn(41, 5, dtype=torch.float64), torch.randn(41, 3, dtype=torch.float64)
    got = Objective(model, (xs, ys), loss="mse", batch_size=8)()
    with torch.no_grad():
        expected = F.mse_loss(model(xs), ys).item()
    assert got == {"loss": pytest.approx(expected, **APPROX64)}


def test_model_state_and_flags_unchanged_in_train_mode():
    model = cnn()
    model.train()
    model[3].eval()  # a mixed set of flags must come back as it was
    before = {n: t.clone() for n, t in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    objective = Objective(model, data((3, 5, 5)), train_mode=True, batch_size=16)
    objective()
    dirs = random_directions(model, seed=0)
    objective.evaluate_points(objective.base_state, [dirs.x, dirs.y], COORDS[:2])
    after = model.state_dict()
    for name, tensor in before.items():
        assert tensor.numpy().tobytes() == after[name].numpy().tobytes(), name
    assert [m.training for m in model.modules()] == flags


def test_user_metric_and_closure():
    model = mlp(torch.float64)
    xs, ys = data((6,), dtype=torch.float64)

    def wrong(outputs, targets):
        return (outputs.argmax(1) != targets).sum()

    got = Objective(model, (xs, ys), metrics={"wrong": wrong}, batch_size=10)()
    assert got["wrong"] == pytest.approx(1 - got["accuracy"], **APPROX64)

    def closure(net, batch):
        inputs, targets = batch
        return F.cross_entropy(net(inputs), targets, reduction="sum"), len(targets)

    by_closure = Objective(model, (xs, ys), batch_loss=closure, batch_size=10)
    assert by_closure()["loss"] == pytest.approx(got["loss"], **APPROX64)
    dirs = random_directions(model, seed=0)
    a = by_closure.evaluate_points(by_closure.base_state, [dirs.x, dirs.y], COORDS)
    b = Objective(model, (xs, ys), batch_size=10).evaluate_points(
        by_closure.base_state, [dirs.x, dirs.y], COORDS
    )
    np.testing.assert_allclose(a["loss"], b["loss"], **F64)


def test_reserved_and_bad_options():
    model = mlp()
    with pytest.raises(ValueError, match="reserved"):
        Objective(model, data((6,)), metrics={"loss": lambda o, t: o.sum()})
    with pytest.raises(ValueError, match="precision"):
        Objective(model, data((6,)), precision="fp16")
    with pytest.raises(ValueError, match="points_per_pass"):
        Objective(model, data((6,)), points_per_pass=0)
    for bad in (1.5, True):
        with pytest.raises(TypeError, match="points_per_pass"):
            Objective(model, data((6,)), points_per_pass=bad)


# ---------------------------------------------------------------- K points per pass
def test_stacked_states_equal_one_point_states_bit_for_bit():
    model = cnn()
    dirs = random_directions(model, seed=3, dir_type="states", ignore="none")
    base = Objective(model, data((3, 5, 5))).full_state(None)
    moved = move_directions([dirs.x, dirs.y], base)
    stacked = stack_points(base, moved, torch.from_numpy(COORDS))
    for k, point in enumerate(COORDS):
        state = axpy(base, zip(point.tolist(), [dirs.x, dirs.y], strict=True))
        for name, tensor in stacked.items():
            assert torch.equal(tensor[k], state[name]), (k, name)


@pytest.mark.parametrize("make, shape", [(mlp, (6,)), (cnn, (3, 5, 5))])
def test_batched_equals_one_point_path_float32(make, shape):
    model = make()
    dirs = random_directions(model, seed=2)
    one = Objective(model, data(shape), batch_size=16, points_per_pass=1)
    many = Objective(model, data(shape), batch_size=16, points_per_pass=3)
    a = one.evaluate_points(one.base_state, [dirs.x, dirs.y], COORDS)
    b = many.evaluate_points(many.base_state, [dirs.x, dirs.y], COORDS)
    for name in one.names:
        np.testing.assert_allclose(b[name], a[name], **F32)
    # The centre is the checkpoint itself, exactly, whatever K.
    assert COORDS[0].tolist() == [0.0, 0.0]
    assert a["loss"][0] == b["loss"][0] == one()["loss"]


def test_cpu_chooses_batching_only_when_it_measures_faster(monkeypatch):
    import landscape.evaluate as evaluate

    quick = Objective(mlp(), data((6,)), batch_size=16)
    assert quick.resolve_points_per_pass() in (1, evaluate.CPU_PROBE_POINTS)
    monkeypatch.setattr(evaluate, "CPU_PROBE_SECONDS", 0.0)  # every point counts as slow
    assert Objective(mlp(), data((6,)), batch_size=16).resolve_points_per_pass() == 1
    monkeypatch.setattr(evaluate, "CPU_PROBE_SECONDS", 1e9)
    monkeypatch.setattr(Objective, "_batched_totals", lambda *args: time.sleep(0.05))
    assert Objective(mlp(), data((6,)), batch_size=16).resolve_points_per_pass() == 1


def test_batched_equals_one_point_path_float64():
    model = cnn(torch.float64)
    dirs = random_directions(model, seed=2)
    args = (model, data((3, 5, 5), dtype=torch.float64))
    a = Objective(*args, batch_size=16).evaluate_points(
        model.state_dict(), [dirs.x, dirs.y], COORDS
    )
    b = Objective(*args, batch_size=16, points_per_pass=4).evaluate_points(
        model.state_dict(), [dirs.x, dirs.y], COORDS
    )
    for name in a:
        np.testing.assert_allclose(b[name], a[name], **F64)


def test_points_per_pass_override_sets_the_chunks(monkeypatch):
    model = mlp()
    objective = Objective(model, data((6,)), points_per_pass=2)
    sizes = []
    original = Objective._batched_totals

    def spy(self, base, directions, coords):
        sizes.append(len(coords))
        return original(self, base, directions, coords)

    monkeypatch.setattr(Objective, "_batched_totals", spy)
    dirs = random_directions(model, seed=0)
    objective.evaluate_points(objective.base_state, [dirs.x, dirs.y], COORDS)
    assert sizes == [2, 2]  # and the fifth point alone, on the one-point path


def test_automatic_points_per_pass():
    assert auto_points_per_pass(torch.device("cpu"), 10, 10) == 1
    cuda = torch.device("cuda")
    assert auto_points_per_pass(cuda, 10**6, 10**6, free_bytes=10**8) == 16
    assert auto_points_per_pass(cuda, 10**9, 10**9, free_bytes=10**8) == 1
    assert auto_points_per_pass(cuda, 1, 1, free_bytes=10**12) == 64
    assert auto_points_per_pass(cuda, 1, 2**29, free_bytes=10**12) == 2  # already busy


def test_fallback_to_one_point_warns_once_and_matches():
    model = cnn()
    model.train()
    objective = Objective(model, data((3, 5, 5)), train_mode=True, points_per_pass=4)
    dirs = random_directions(model, seed=0)
    model[3].p = 0.0  # no random masks, so both paths must agree exactly
    with pytest.warns(RuntimeWarning, match="one point at a time"):
        a = objective.evaluate_points(objective.base_state, [dirs.x, dirs.y], COORDS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = objective.evaluate_points(objective.base_state, [dirs.x, dirs.y], COORDS)
    one = Objective(model, data((3, 5, 5)), train_mode=True)
    b = one.evaluate_points(one.base_state, [dirs.x, dirs.y], COORDS)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
        np.testing.assert_array_equal(again[name], b[name])


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        out = self.fc(x)
        return out if out.sum() > 0 else -out  # a Python branch on a value


def test_fallback_on_data_dependent_control_flow():
    torch.manual_seed(0)
    model = DataDependent()
    dirs = random_directions(model, seed=0)
    many = Objective(model, data((6,)), points_per_pass=5)
    with pytest.warns(RuntimeWarning, match="vmap"):
        a = many.evaluate_points(many.base_state, [dirs.x, dirs.y], COORDS)
    one = Objective(model, data((6,)))
    b = one.evaluate_points(one.base_state, [dirs.x, dirs.y], COORDS)
    np.testing.assert_array_equal(a["loss"], b["loss"])


def test_evaluate_points_accepts_weights_only_base_and_keeps_centre_exact():
    model = cnn()
    objective = Objective(model, data((3, 5, 5)))
    weights = dict(model.named_parameters())
    dirs = random_directions(model, seed=0)
    got = objective.evaluate_points(weights, [dirs.x], np.zeros((2, 1)))
    assert got["loss"].tolist() == [objective()["loss"]] * 2


# ---------------------------------------------------------------- precision
def test_bf16_close_to_fp32_and_sums_stay_float64():
    model = cnn()
    dirs = random_directions(model, seed=2)
    fp32 = Objective(model, data((3, 5, 5)), batch_size=16)
    bf16 = Objective(model, data((3, 5, 5)), batch_size=16, precision="bf16", points_per_pass=3)
    a = fp32.evaluate_points(fp32.base_state, [dirs.x, dirs.y], COORDS)
    b = bf16.evaluate_points(bf16.base_state, [dirs.x, dirs.y], COORDS)
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=BF16_RTOL)
    assert not np.array_equal(b["loss"], a["loss"])  # it did run in bfloat16
    sums, _ = bf16.batch_sums(bf16.base_state, next(bf16.batches()))
    assert sums["loss"].dtype == torch.float32  # the loss is not taken in bfloat16
    # mse with bf16 outputs and float32 targets
    torch.manual_seed(0)
    reg = nn.Linear(5, 2)
    xy = (torch.randn(30, 5), torch.randn(30, 2))
    exact = Objective(reg, xy, loss="mse")()["loss"]
    assert Objective(reg, xy, loss="mse", precision="bf16")()["loss"] == pytest.approx(
        exact, rel=BF16_RTOL
    )


def test_tf32_is_fp32_on_cpu_and_flags_are_restored():
    model = mlp()
    fp32 = Objective(model, data((6,)))()
    assert Objective(model, data((6,)), precision="tf32")() == fp32
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with pytest.raises(KeyError):
        with precision_context("tf32", torch.device("cuda")):
            assert torch.backends.cuda.matmul.allow_tf32 is True
            raise KeyError("inside")
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == saved
    with precision_context("bf16", torch.device("cpu")):
        assert torch.is_autocast_enabled("cpu")
    assert not torch.is_autocast_enabled("cpu")


# ---------------------------------------------------------------- sharding, no group
def test_shard_data_without_a_group_changes_nothing():
    assert (distributed.rank(), distributed.world_size(), distributed.is_distributed()) == (
        0,
        1,
        False,
    )
    model = mlp()
    plain = Objective(model, data((6,)), batch_size=8)
    sharded = Objective(model, data((6,)), batch_size=8, shard_data=True)
    assert not sharded.shard_data
    assert sharded() == plain()
    assert sharded.num_examples == 53
    t = torch.ones(3)
    assert sharded.all_reduce(t) is t and t.tolist() == [1.0, 1.0, 1.0]
    assert distributed.shard_chunks(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert distributed.gather_objects(3) == [3]
