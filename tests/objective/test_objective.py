"""Tests for landscape.objective: exact means, no change to the model, one evaluation path,
K points per pass (chosen without timing), exact interpolation ends, re-pointing with
``at``, reduced precision, fallbacks.

Tolerances (the promise in the docs): with K > 1 points per pass the values equal the
one-point path to 1e-5 relative in float32 (batched kernels sum in another order; the
perturbed states themselves are equal bit for bit) and to 1e-12 in float64. bf16 is
within 2e-2 relative of fp32 on these small models (typically 1e-4 to 1e-3).
"""

from __future__ import annotations

import copy
import time
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from landscape import distributed
from landscape.data import EvaluationData
from landscape.directions import Directions, interpolation_direction, random_directions
from landscape.objective import (  # noqa: I001
    Objective,
    auto_points_per_pass,
    move_directions,
    precision_context,
    stack_points,
)
from landscape.objective import points as _points_module
from landscape.params import axpy, model_state, point_state
from landscape.surface import compute_surface, load_surface

F32 = {"rtol": 1e-5, "atol": 1e-6}
F64 = {"rtol": 1e-12, "atol": 1e-12}
APPROX64 = {"rel": 1e-12, "abs": 1e-12}
BF16_RTOL = 2e-2


def seeded(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` with every parameter drawn anew from a seeded generator (no global seed)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) / p.shape[-1] ** 0.5)
    return model


def mlp(dtype=torch.float32) -> nn.Module:
    return seeded(nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4))).to(dtype)


def cnn(dtype=torch.float32) -> nn.Module:
    model = seeded(nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Flatten(),
        nn.Linear(6 * 5 * 5, 4),
    )).to(dtype)  # fmt: skip
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # non-trivial running statistics
        model[1].running_mean.copy_(torch.rand(6, generator=g) * 0.4 - 0.2)
        model[1].running_var.copy_(torch.rand(6, generator=g) + 0.5)
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
    model = seeded(nn.Linear(5, 3)).double()
    g = torch.Generator().manual_seed(2)
    xs = torch.randn(41, 5, generator=g, dtype=torch.float64)
    ys = torch.randn(41, 3, generator=g, dtype=torch.float64)
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


class FakeClock:
    """A ``time.perf_counter`` whose readings advance by the given steps, in turn."""

    def __init__(self, steps):
        self.steps, self.now, self.calls = list(steps), 0.0, 0

    def __call__(self):
        self.now += self.steps[self.calls % len(self.steps)]
        self.calls += 1
        return self.now


def test_cpu_points_per_pass_is_the_same_whatever_the_clock(monkeypatch):
    # 0.1 timed one cold point against a warm K=8 pass and chose K by the clock: with a
    # clock where every interval is 1 ms it chose 8, with one where batched passes look
    # slow it chose 1. The choice must not depend on timing (issue 8 item 8, issue 9 item 4).
    chosen = []
    for steps in ([1e-3], [1e-3, 1e-3, 1e-3, 1e-3, 1.0], [1.0]):
        clock = FakeClock(steps)
        monkeypatch.setattr(time, "perf_counter", clock)
        chosen.append(Objective(mlp(), data((6,)), batch_size=16).resolve_points_per_pass())
        assert clock.calls == 0  # nothing timed
    assert chosen == [1, 1, 1]
    assert Objective(mlp(), data((6,)), points_per_pass=5).resolve_points_per_pass() == 5


def test_surface_file_records_points_per_pass(tmp_path):
    model = mlp()
    dirs = random_directions(model, seed=0)
    compute_surface(model, data((6,)), dirs, [0, 1], path=tmp_path / "s.h5", progress=False)
    assert load_surface(tmp_path / "s.h5").attrs["points_per_pass"] == 1
    again = compute_surface(model, data((6,)), dirs, [0, 1], path=tmp_path / "s.h5",
                            points_per_pass=3, progress=False)  # fmt: skip
    assert again.attrs["num_computed"] == 2  # a resume with another K is accepted


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
    original = _points_module.stack_points

    def spy(base, directions, coords, **kwargs):
        sizes.append(len(coords))
        return original(base, directions, coords, **kwargs)

    monkeypatch.setattr("landscape.objective.points.stack_points", spy)
    dirs = random_directions(model, seed=0)
    objective.evaluate_points(objective.base_state, [dirs.x, dirs.y], COORDS)
    assert sizes == [2, 2]  # and the centre alone, on the one-point path


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
    model = seeded(DataDependent())
    dirs = random_directions(model, seed=0)
    many = Objective(model, data((6,)), points_per_pass=5)
    with pytest.warns(RuntimeWarning, match="vmap"):
        a = many.evaluate_points(many.base_state, [dirs.x, dirs.y], COORDS)
    one = Objective(model, data((6,)))
    b = one.evaluate_points(one.base_state, [dirs.x, dirs.y], COORDS)
    np.testing.assert_array_equal(a["loss"], b["loss"])


@pytest.mark.parametrize("error", [ValueError("bug"), TypeError("bug"), RuntimeError("bug")])
def test_a_bug_in_the_loss_raises_at_once_not_a_vmap_warning(error):
    """Only what vmap refuses falls back to one point at a time: an error of the loss's
    own propagates from the batched path with no warning, and vmap stays in use."""

    def broken(outputs, targets):
        raise error

    model = mlp()
    dirs = random_directions(model, seed=0)
    objective = Objective(model, data((6,)), loss=broken, loss_reduction="sum", points_per_pass=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback warning would be raised instead
        with pytest.raises(type(error), match="^bug$"):
            objective.evaluate_points(objective.base_state, [dirs.x, dirs.y], COORDS[1:])
    assert objective._work.vmap_ok


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
    assert sums["loss"].dtype == torch.float64  # not in bfloat16: cross-entropy is float64
    # mse with bf16 outputs and float32 targets
    reg = seeded(nn.Linear(5, 2))
    g = torch.Generator().manual_seed(3)
    xy = (torch.randn(30, 5, generator=g), torch.randn(30, 2, generator=g))
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


# ---------------------------------------------------------------- one path, exact points
def test_one_point_path_evaluates_exactly_the_point_state():
    # The private copy's flat update must form the very state point_state defines: the
    # value at each point equals the value of that state written in whole, bit for bit.
    model = cnn()
    objective = Objective(model, data((3, 5, 5)), batch_size=16)
    dirs = random_directions(model, seed=3, dir_type="states", ignore="none")
    got = objective.evaluate_points(objective.base_state, [dirs.x, dirs.y], COORDS)
    for k, point in enumerate(COORDS):
        state = point_state(objective.base_state, [dirs.x, dirs.y], point)
        assert got["loss"][k] == objective(state)["loss"], k
        assert got["accuracy"][k] == objective(state)["accuracy"], k


def test_a_new_direction_made_where_a_freed_one_was_is_not_taken_for_it():
    # Directions made one at a time and dropped after use, as sharpness draws them: a new
    # tensor often gets a freed one's id, which must not bring back the old direction.
    model = nn.Linear(3, 1, bias=False).double()
    objective = Objective(model, (torch.eye(3, dtype=torch.float64), torch.zeros(3, 1)),
                          loss="mse")  # fmt: skip
    for i in range(50):
        direction = {"weight": torch.full((1, 3), float(i), dtype=torch.float64)}
        got = objective.evaluate_points(objective.base_state, [direction], np.ones((1, 1)))
        assert (
            got["loss"][0]
            == objective(point_state(objective.base_state, [direction], [1.0]))["loss"]
        ), i
        del direction


def two_checkpoints():
    a = cnn()
    b = seeded(cnn(), seed=7)
    g = torch.Generator().manual_seed(8)
    with torch.no_grad():
        b[1].running_mean.copy_(torch.rand(6, generator=g) - 0.5)
        b[1].running_var.copy_(torch.rand(6, generator=g) * 2 + 0.1)
    return a, b


def test_interpolation_is_exact_at_both_ends():
    # theta + 1 * (b - a) is not b in float32; the surface at t = 1 must be checkpoint b's
    # own value bit for bit (issue 8 item 5), and t = 0 checkpoint a's.
    a, b = two_checkpoints()
    d = interpolation_direction(a, b, dir_type="states")
    naive = axpy(model_state(a, "states"), [(1.0, d)])
    assert any(not torch.equal(naive[n], b.state_dict()[n]) for n in d)  # the bug is real
    x_end = {n: t for n, t in b.state_dict().items() if n in d}
    line = Directions(d, kind="interpolation", x_end=x_end)
    ts = [-0.5, 0.0, 0.25, 0.5, 1.0, 1.5]
    surface = compute_surface(a, data((3, 5, 5)), line, ts, batch_size=16, progress=False)
    at_a = Objective(a, data((3, 5, 5)), batch_size=16)()
    at_b = Objective(b, data((3, 5, 5)), batch_size=16)()
    for name in ("loss", "accuracy"):
        assert surface[name][1] == at_a[name]
        assert surface[name][4] == at_b[name]
    # interior points: within rounding of the plain formula
    plain = Objective(a, data((3, 5, 5)), batch_size=16).evaluate_points(
        model_state(a, "states"), [d], np.array(ts)[:, None]
    )
    np.testing.assert_allclose(surface["loss"], plain["loss"], rtol=1e-5)
    # with K points per pass the states are exact (see the next test); batched kernels
    # sum in another order, so the values agree to float32 rounding
    other = random_directions(a, num=1, seed=1).x
    many = Objective(a, data((3, 5, 5)), batch_size=16, points_per_pass=3)
    coords = np.array([[t, 0.0] for t in ts])
    stacked = many.evaluate_points(many.base_state, [d, other], coords, ends=[x_end, None])
    np.testing.assert_allclose(stacked["loss"], surface["loss"], **F32)


def test_stacked_states_with_an_end_equal_point_state_bit_for_bit():
    a, b = two_checkpoints()
    d = interpolation_direction(a, b, dir_type="states")
    x_end = {n: t for n, t in b.state_dict().items() if n in d}
    other = random_directions(a, num=1, seed=1, dir_type="states").x
    base = Objective(a, data((3, 5, 5))).full_state(None)
    coords = np.array([[0.0, 0.3], [0.49, -1.0], [0.5, 0.2], [1.0, 0.0], [1.7, 2.0]])
    stacked = stack_points(base, [other, d], torch.from_numpy(coords[:, ::-1].copy()),
                           ends=[None, x_end])  # fmt: skip
    for k, (t, c) in enumerate(coords):
        state = point_state(base, [d, other], [t, c], ends=[x_end, None])
        for name, tensor in stacked.items():
            assert torch.equal(tensor[k], state[name]), (k, name)
    assert all(torch.equal(stacked[n][3], b.state_dict()[n]) for n in d)


def test_an_end_that_does_not_fit_its_direction_is_refused():
    a, b = two_checkpoints()
    objective = Objective(a, data((3, 5, 5)))
    d = interpolation_direction(a, b, dir_type="states")
    x_end = {n: t for n, t in b.state_dict().items() if n in d}
    half = {n: t / 2 for n, t in d.items()}
    with pytest.raises(ValueError, match="end state minus the base"):
        objective.evaluate_points(objective.base_state, [half], [[1.0]], ends=[x_end])
    with pytest.raises(ValueError, match="at most one"):
        objective.evaluate_points(objective.base_state, [d, d], [[1.0, 0.0]], ends=[x_end] * 2)


# ---------------------------------------------------------------- one Objective, many states
def test_at_gives_a_fresh_objectives_values_without_copying_again(monkeypatch):
    a, b = two_checkpoints()
    objective = Objective(a, data((3, 5, 5)), batch_size=16)
    objective()  # the private copy exists now
    copies = []
    original = copy.deepcopy
    monkeypatch.setattr(copy, "deepcopy", lambda *args: copies.append(1) or original(*args))
    moved = objective.at(b.state_dict())
    values = moved(), objective()
    assert moved.data is objective.data and copies == []
    assert values[0] == Objective(b, data((3, 5, 5)), batch_size=16)()
    assert values[1] == Objective(a, data((3, 5, 5)), batch_size=16)()
    with pytest.raises(ValueError, match="shape"):
        objective.at({"5.weight": torch.zeros(3, 3)})
    with pytest.raises(ValueError, match="names the model does not"):
        objective.at({"nope": torch.zeros(1)})


def test_prepared_data_is_shared_and_fingerprinted_once(monkeypatch):
    import landscape.data

    calls = []
    original = landscape.data.fingerprint
    monkeypatch.setattr(landscape.data, "fingerprint", lambda b: calls.append(1) or original(b))
    prepared = EvaluationData(data((6,)), batch_size=16)
    first, second = Objective(mlp(), prepared), Objective(mlp(torch.float32), prepared)
    assert first.data_sha256() == second.data_sha256() == prepared.sha256()
    assert len(calls) == 1
    assert first() == Objective(mlp(), data((6,)), batch_size=16)()
    with pytest.raises(ValueError, match="come from the EvaluationData"):
        Objective(mlp(), prepared, batch_size=8)


def test_values_over_other_batches():
    model = mlp(torch.float64)
    objective = Objective(model, data((6,), dtype=torch.float64), batch_size=16)
    held_out = EvaluationData(data((6,), n=31, dtype=torch.float64, classes=4), batch_size=7)
    expected = Objective(model, data((6,), n=31, dtype=torch.float64), batch_size=7)()
    assert objective(batches=held_out) == expected
    assert objective.num_examples == 53  # unchanged by the other batches


# ---------------------------------------------------------------- a user's sum or mean
def mean_ce(outputs, targets):
    return F.cross_entropy(outputs, targets)


def sum_ce(outputs, targets):
    return F.cross_entropy(outputs, targets, reduction="sum")


@pytest.mark.parametrize("fn, reduction", [(mean_ce, "mean"), (sum_ce, "sum")])
def test_a_mean_or_sum_loss_gives_the_exact_mean(fn, reduction):
    model = mlp(torch.float64)
    xs, ys = data((6,), dtype=torch.float64)
    dirs = random_directions(model, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        objective = Objective(model, (xs, ys), loss=fn, batch_size=16, points_per_pass=2)
        value = objective()["loss"]
        both = objective.evaluate_points(objective.base_state, [dirs.x, dirs.y], COORDS)  # K=2
    notes = [str(w.message) for w in caught]
    assert len(notes) == (reduction == "mean")  # said once, when the Objective is made
    assert all(n.startswith("loss 'mean_ce' returns the batch mean") for n in notes)
    assert objective.loss_reduction == reduction
    with torch.no_grad():
        expected = F.cross_entropy(model(xs), ys).item()
    assert value == pytest.approx(expected, **APPROX64)
    reference = Objective(model, (xs, ys), batch_size=16).evaluate_points(
        objective.base_state, [dirs.x, dirs.y], COORDS
    )
    np.testing.assert_allclose(both["loss"], reference["loss"], **F64)
    sums, count = objective.batch_sums(objective.base_state, (xs, ys))
    assert (sums["loss"].item(), count) == pytest.approx((53 * expected, 53), **APPROX64)


def test_a_loss_of_unknown_reduction_is_refused_naming_the_option():
    model, pairs = mlp(torch.float64), data((6,), dtype=torch.float64)
    for loss, batch_size in ((lambda o, t: 0 * o.sum(), 16), (mean_ce, 1)):
        with pytest.raises(ValueError, match="loss_reduction='sum' or 'mean'"):
            Objective(model, pairs, loss=loss, batch_size=batch_size)
    with pytest.raises(ValueError, match="batch sum already"):
        Objective(model, pairs, loss="cross_entropy", loss_reduction="mean")
    with pytest.raises(ValueError, match="batch_loss"):
        Objective(model, pairs, batch_loss=lambda m, b: (0, 1), loss_reduction="sum")


def test_a_declared_reduction_skips_the_detection():
    model = mlp(torch.float64)
    xs, ys = data((6,), dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no note about a mean that was declared
        by_one = Objective(model, (xs, ys), loss=mean_ce, loss_reduction="mean", batch_size=1)
        zero = Objective(model, (xs, ys), loss=lambda o, t: 0 * o.sum(), loss_reduction="sum")
    assert by_one()["loss"] == pytest.approx(Objective(model, (xs, ys))()["loss"], **APPROX64)
    assert zero()["loss"] == 0.0


def test_a_surface_of_a_mean_loss_records_it(tmp_path):
    model = mlp(torch.float64)
    pairs = data((6,), dtype=torch.float64)
    dirs = random_directions(model, num=1, seed=0)
    options = dict(path=tmp_path / "s.h5", progress=False, batch_size=16)
    with pytest.warns(UserWarning, match="batch mean"):
        line = compute_surface(model, pairs, dirs, [-1, 0, 1], loss=mean_ce, **options)
    again = compute_surface(model, pairs, dirs, [-1, 0, 1], loss=mean_ce, loss_reduction="mean",
                            **options)  # fmt: skip
    assert line.attrs["loss_reduction"] == load_surface(tmp_path / "s.h5").attrs["loss_reduction"]
    assert line.attrs["loss_reduction"] == "mean" and np.array_equal(line["loss"], again["loss"])
    summed = compute_surface(model, pairs, dirs, [-1, 0, 1], batch_size=16, progress=False)
    assert "loss_reduction" not in summed.attrs
    np.testing.assert_allclose(line["loss"], summed["loss"], **F64)


# ---------------------------------------------------------------- per-point overheads
class Noisy(nn.Module):
    """Draws from the global generator in eval mode too, where its mean weight is above
    ``above``."""

    def __init__(self, above: float):
        super().__init__()
        self.linear = nn.Linear(6, 4)
        self.above = above

    def forward(self, x):
        out = self.linear(x)
        return out + torch.randn_like(out) if self.linear.weight.mean() > self.above else out


def _count_forks(monkeypatch) -> list[int]:
    import landscape.objective.calling as calling

    forks = [0]
    real = calling._seeded

    def counted(seed, device):
        forks[0] += 1
        return real(seed, device)

    monkeypatch.setattr(calling, "_seeded", counted)
    return forks


def test_no_generator_fork_per_point_for_a_model_that_draws_nothing(monkeypatch):
    objective = Objective(mlp(), data((6,)), batch_size=16)  # 4 batches
    direction = random_directions(objective.model, num=1, seed=0).x
    forks = _count_forks(monkeypatch)
    rng = torch.get_rng_state()
    got = objective.evaluate_points(objective.base_state, [direction], COORDS[:, :1])
    assert forks[0] == 0  # 0.2 forked the generators for every batch of every point
    assert torch.equal(torch.get_rng_state(), rng)
    for k, point in enumerate(COORDS[:, :1]):
        assert (
            got["loss"][k]
            == objective(point_state(objective.base_state, [direction], point))["loss"]
        )


def test_the_fork_stays_where_the_model_draws(monkeypatch):
    # train-mode Dropout: every batch of every point forked, from the start
    dropout = Objective(cnn(), data((3, 5, 5)), batch_size=16, train_mode=True)
    direction = random_directions(dropout.model, num=1, seed=0).x
    forks = _count_forks(monkeypatch)
    dropout.evaluate_points(dropout.base_state, [direction], COORDS[:, :1])
    assert forks[0] == len(COORDS) * 4


@pytest.mark.parametrize("above", [-np.inf, 0.3])
def test_a_model_that_draws_in_eval_mode_gets_the_seeded_draws(above):
    # above 0.3: no draw at the first points (the centre is evaluated first), found out
    # later in the same call; every batch that draws must draw from the objective's seed.
    inputs, targets = data((6,))
    model = Noisy(-np.inf).eval()
    model.above = float(model.linear.weight.mean()) + above
    objective = Objective(model, (inputs, targets), batch_size=16, seed=3, accuracy=False)
    direction = {n: torch.ones_like(p) for n, p in model.named_parameters()}
    rng = torch.get_rng_state()
    got = objective.evaluate_points(objective.base_state, [direction], COORDS[:, :1])
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's stream never moves
    assert objective._work.draws
    for k, (c,) in enumerate(COORDS[:, :1]):
        state = {n[7:]: t for n, t in point_state(model.state_dict(), [direction], [c]).items()}
        total = 0.0
        for i in range(0, len(inputs), 16):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(3)
                out = torch.func.functional_call(model.linear, state, (inputs[i : i + 16],))
                if state["weight"].mean() > model.above:
                    out = out + torch.randn_like(out)
            total += float(F.cross_entropy(out, targets[i : i + 16], reduction="sum"))
        assert got["loss"][k] == pytest.approx(total / len(inputs), rel=1e-6), k


def _flat_weights(store: list):
    """A batch_loss closure that keeps the weights the private module holds at each call."""

    def batch_loss(module, batch):
        store.append(torch.cat([p.detach().reshape(-1).clone() for p in module.parameters()]))
        return module(batch[0]).pow(2).sum(), len(batch[0])

    return batch_loss


def test_points_of_a_row_are_one_product_and_one_sum_from_the_base_without_drift():
    from torch.utils._python_dispatch import TorchDispatchMode

    model = mlp(torch.float64)
    store: list[torch.Tensor] = []
    objective = Objective(model, data((6,), dtype=torch.float64), batch_size=64,
                          batch_loss=_flat_weights(store))  # fmt: skip
    dirs = random_directions(model, seed=4)
    # rows revisited out of order, as resumed chunks and the centre-first order do
    coords = np.array([[0.5, 0.1], [0.5, -0.3], [-1.0, 0.2], [0.5, 0.7], [0.0, 0.4],
                       [-1.0, -0.9], [0.5, 0.0], [0.5, 0.1]])  # fmt: skip
    objective.evaluate_points(objective.base_state, [dirs.x, dirs.y], coords)
    flat = lambda s: torch.cat([s[n].reshape(-1) for n, _ in model.named_parameters()])  # noqa: E731
    base, dx, dy = flat(objective.base_state), flat(dirs.x), flat(dirs.y)
    for k, (a, b) in enumerate(coords):
        reference = flat(point_state(objective.base_state, [dirs.x, dirs.y], [a, b]))
        assert torch.equal(store[k], reference), k  # the same bits as the one definition
        torch.testing.assert_close(store[k], base + a * dx + b * dy, rtol=1e-15, atol=1e-15)

    class Ops(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket.__name__ in ("mul", "add", "add_", "copy_"):
                Ops.count += 1  # passes over the weights (not views)
            return func(*args, **(kwargs or {}))

    plan = objective._work.plan[2]
    counts = []
    for point in ([0.25, 0.5], [0.25, -0.5], [0.25, 0.75]):
        Ops.count = 0
        with Ops():
            plan.write(point)
        counts.append(Ops.count)
    assert counts == [4, 2, 2]  # the row once, then one product and one sum a point (0.2: 4)
