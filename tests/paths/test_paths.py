"""Mode-connecting curves, loss barriers, BatchNorm re-estimation, model soups, /paths."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
import torch
from _shared import gaussian_data, gaussian_mlp
from torch import nn

from landscape import Objective
from landscape.demo import digits_data, digits_mlp, train_classifier
from landscape.paths import (
    Curve,
    PathResult,
    connect_checkpoints,
    evaluate_path,
    fit_curve,
    loss_barrier,
    model_soup,
    reestimate_bn,
)
from landscape.storage.paths import load_paths, save_paths


@pytest.fixture(scope="module")
def digits_pair():
    """Two digits MLPs trained from different seeds, full batch on a subset (about 1 s)."""
    pytest.importorskip("sklearn")  # the demo extra: the digits
    X, y = digits_data("train")
    X, y = X[:256], y[:256]
    models = [
        train_classifier(
            digits_mlp(seed=seed),
            (X, y),
            lr=0.02,
            optimizer="adam",
            steps=80,
            seed=seed,
            progress=False,
        )  # fmt: skip
        for seed in (0, 1)
    ]
    return models, (X, y)


def _small(seed: int) -> nn.Module:
    return gaussian_mlp((3, 5, 2), seed=seed)


def _data(n: int = 12, seed: int = 0):
    return gaussian_data(n, 3, 2, seed=seed)


@pytest.mark.parametrize("kind", ["bezier", "polychain"])
def test_fitted_curve_ends_are_the_checkpoints_exactly(kind):
    a, b = _small(0), _small(1)
    objective = Objective(_small(2), _data())
    before = {n: t.clone() for n, t in objective.model.state_dict().items()}
    curve = fit_curve(objective, a, b, kind=kind, num_steps=5, lr=0.05)
    for t, ref in ((0.0, a), (1.0, b)):
        point = curve.point(t)
        for name, tensor in ref.state_dict().items():
            assert torch.equal(point[name], tensor)
    path = evaluate_path(objective, curve, 5)
    assert path.loss[0] == objective(a.state_dict())["loss"]
    assert path.loss[-1] == objective(b.state_dict())["loss"]
    assert path.metrics["accuracy"].shape == (5,)
    for name, tensor in objective.model.state_dict().items():  # the caller's model untouched
        assert torch.equal(tensor, before[name])
    assert curve.bend is not None and set(curve.bend) == {n for n, _ in a.named_parameters()}


def test_curve_formulas():
    a, b, bend = ({"w": torch.tensor([v], dtype=torch.float64)} for v in (1.0, 3.0, 10.0))
    bezier = Curve("bezier", a, b, bend)
    assert bezier.point(0.25)["w"].item() == pytest.approx(
        0.75**2 * 1 + 2 * 0.25 * 0.75 * 10 + 0.0625 * 3
    )
    chain = Curve("polychain", a, b, bend)
    assert chain.point(0.25)["w"].item() == pytest.approx(5.5)
    assert chain.point(0.5)["w"].item() == pytest.approx(10.0)
    assert chain.point(0.75)["w"].item() == pytest.approx(6.5)
    assert Curve("line", a, b).point(0.5)["w"].item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="needs a bend"):
        Curve("bezier", a, b)
    with pytest.raises(ValueError, match="one of"):
        Curve("spline", a, b, bend)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bezier.point(1.5)


def test_loss_barrier_closed_form():
    t = np.linspace(0, 1, 11)
    loss = 4 * t * (1 - t) + 2 * t + 1  # chord 1 + 2t, excess 4 t (1 - t): 1 at t = 1/2
    barrier, where = loss_barrier(t, loss)
    assert barrier == pytest.approx(1.0, abs=1e-14) and where == 0.5
    assert loss_barrier(t, 1 + 2 * t - t * (1 - t)) == (0.0, 0.0)  # below the chord
    with pytest.raises(ValueError, match="from 0 to 1"):
        loss_barrier([0.1, 1.0], [1.0, 2.0])


def test_fitted_curve_barrier_is_a_fraction_of_the_line(digits_pair):
    (a, b), data = digits_pair
    objective = Objective(a, data)
    connection = connect_checkpoints(objective, a, b, curve="bezier", t=11, num_steps=100,
                                     lr=0.02, seed=0)  # fmt: skip
    line, curve = connection.line, connection.curve
    assert line.barrier > 0.3  # two independently trained nets: a real barrier on the line
    ratio = curve.barrier / line.barrier
    assert ratio < 0.1, ratio  # measured 0.0055 (Garipov et al.: curves connect modes)
    assert curve.barrier == loss_barrier(curve.t, curve.loss)[0]
    assert curve.loss[0] == line.loss[0] and curve.loss[-1] == line.loss[-1]
    assert set(connection.paths) == {"line", "bezier"}


def test_end_states_that_do_not_fit_the_model_are_refused():
    objective = Objective(_small(2), _data())
    bad = {n: torch.zeros(2, *t.shape) for n, t in _small(1).state_dict().items()}
    with pytest.raises(ValueError, match=r"expected end to match .* mis-shaped keys"):
        connect_checkpoints(objective, _small(0), bad, curve="line", t=3)
    with pytest.raises(TypeError, match="expected an nn.Module or a state_dict for start"):
        fit_curve(objective, [1.0], _small(1), num_steps=1)


def _bn_model(two: bool) -> nn.Module:
    torch_gen = torch.Generator().manual_seed(3)
    layers = [nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)]
    if two:
        layers += [nn.BatchNorm1d(2)]
    model = nn.Sequential(*layers).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=torch_gen, dtype=torch.float64))
    return model.eval()


def test_bn_reestimation_equals_statistics_by_hand_ragged_batches():
    model = _bn_model(two=False)
    X, y = _data(10)
    objective = Objective(model, (X, y), batch_size=4)  # batches of 4, 4 and 2
    before = {n: t.clone() for n, t in model.state_dict().items()}
    state = reestimate_bn(objective, model.state_dict())
    h = X @ model[0].weight.T + model[0].bias
    assert torch.allclose(state["1.running_mean"], h.mean(0), rtol=0, atol=1e-13)
    assert torch.allclose(state["1.running_var"], h.var(0, unbiased=True), rtol=0, atol=1e-13)
    assert not torch.allclose(before["1.running_mean"], h.mean(0))  # they did change
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name])
    assert model.training is False and model[1].training is False


def test_bn_reestimation_two_layers_by_hand_and_along_a_path():
    model = _bn_model(two=True)
    X, y = _data(8)
    objective = Objective(model, (X, y))  # one batch
    bn1 = model[1]
    h1 = X @ model[0].weight.T + model[0].bias
    normed = (h1 - h1.mean(0)) / torch.sqrt(h1.var(0, unbiased=False) + bn1.eps)
    h2 = torch.relu(normed * bn1.weight + bn1.bias) @ model[3].weight.T + model[3].bias
    state = reestimate_bn(objective, model.state_dict())
    assert torch.allclose(state["4.running_mean"], h2.mean(0), rtol=0, atol=1e-12)
    assert torch.allclose(state["4.running_var"], h2.var(0, unbiased=True), rtol=0, atol=1e-12)
    # along a path the value at t is the loss with the statistics re-estimated there
    other = {n: t + 0.3 if t.is_floating_point() else t for n, t in model.state_dict().items()}
    line = Curve("line", dict(model.state_dict()), other)
    path = evaluate_path(objective, line, 3, bn_reestimate=True)
    middle = reestimate_bn(objective, line.point(0.5))
    assert path.loss[1] == objective(middle)["loss"]
    assert path.settings["bn_reestimate"] is True
    with pytest.raises(ValueError, match="BatchNorm"):
        reestimate_bn(Objective(_small(0), _data()), _small(0).state_dict())


def test_model_soup_is_the_uniform_average():
    models = [_bn_model(two=False) for _ in range(3)]
    for i, m in enumerate(models):
        with torch.no_grad():
            for p in m.parameters():
                p.add_(float(i))
        m[1].num_batches_tracked.fill_(10 + i)
    soup = model_soup(models)
    for name, tensor in models[0].state_dict().items():
        if tensor.is_floating_point():
            mean = sum(m.state_dict()[name] for m in models) / 3
            assert torch.allclose(soup[name], mean, rtol=0, atol=1e-14)
    assert soup["1.num_batches_tracked"].item() == 10
    with pytest.raises(ValueError, match="at least two"):
        model_soup(models[:1])
    with pytest.raises(
        ValueError, match="expected checkpoint 1 to match .* checkpoint 0, got missing"
    ):
        model_soup([models[0], {"x": torch.zeros(1)}])
    bigger = {n: torch.zeros(2, *t.shape) for n, t in models[0].state_dict().items()}
    with pytest.raises(ValueError, match="mis-shaped keys"):
        model_soup([models[0], bigger])


def test_paths_file_layout_and_round_trip(tmp_path):
    a, b = _small(0), _small(1)
    objective = Objective(a, _data())
    connection = connect_checkpoints(objective, a, b, curve="polychain", t=5, num_steps=3)
    out = tmp_path / "c.h5"
    save_paths(out, connection.paths)
    with h5py.File(out, "r") as f:
        group = f["paths/polychain"]
        assert sorted(group) == ["accuracy", "loss", "t"]
        assert group.attrs["barrier"] == connection.curve.barrier
        assert group.attrs["barrier_t"] == connection.curve.barrier_t
        assert group.attrs["num_steps"] == 3
        np.testing.assert_array_equal(f["paths/line/loss"][()], connection.line.loss)
    loaded = load_paths(out)
    assert list(loaded) == ["line", "polychain"]
    assert loaded["line"] == connection.line and loaded["polychain"] == connection.curve
    with pytest.raises(ValueError, match="already has /paths/line"):
        save_paths(out, connection.paths)
    with pytest.raises(ValueError, match="key it by its kind"):
        save_paths(out, {"bezier": connection.line}, overwrite=True)
    assert isinstance(loaded["line"], PathResult)


# ---------------------------------------------------------------- barriers after alignment
def test_connect_with_align_stores_both_barriers_and_the_permutations(tmp_path):
    from landscape.alignment import permutation_spec, permute_state

    a = gaussian_mlp((3, 6, 2), seed=0).double()
    spec = permutation_spec(a)
    perm = {"0": torch.tensor([3, 5, 0, 1, 4, 2])}
    b = permute_state(a.state_dict(), spec, perm)  # the same function, units reordered
    x, y = gaussian_data(20, 3, 2, seed=0)
    objective = Objective(a, (x.double(), y))
    before = {n: t.clone() for n, t in a.state_dict().items()}
    plain = connect_checkpoints(objective, a, b, curve="line", t=5)
    assert plain.unaligned is None and plain.alignment is None
    assert "align" not in plain.line.settings and "repair" not in plain.line.settings
    connection = connect_checkpoints(objective, a, b, curve="line", t=5, align="weights")
    assert connection.unaligned.kind == "unaligned"  # the line as given, as before
    assert connection.unaligned == dataclasses.replace(plain.line, kind="unaligned")
    assert list(connection.paths) == ["line", "unaligned"]
    assert connection.unaligned.barrier > 0
    assert connection.line.barrier == 0.0  # the aligned end is the start exactly
    assert np.array_equal(connection.line.loss, np.full(5, connection.line.loss[0]))
    settings = connection.line.settings
    assert settings["align"] == "weights"
    assert settings["barrier_unaligned"] == connection.unaligned.barrier
    assert settings["permutations"]["0"].tolist() == [2, 3, 5, 0, 4, 1]  # the inverse
    save_paths(connection.paths, tmp_path / "p.h5")
    loaded = load_paths(tmp_path / "p.h5")
    assert loaded["line"] == connection.line and loaded["unaligned"] == connection.unaligned
    rebuilt = permute_state(b, spec, {g: torch.as_tensor(p) for g, p in
                                      loaded["line"].settings["permutations"].items()})  # fmt: skip
    for name, value in a.state_dict().items():  # the aligned end, rebuilt from the file
        assert torch.equal(rebuilt[name], value)
    for name, value in a.state_dict().items():
        assert torch.equal(value, before[name])


def test_connect_with_align_and_a_fitted_curve_joins_the_aligned_end():
    a, b = _small(0).double(), _small(1).double()
    objective = Objective(a, tuple(t.double() if t.is_floating_point() else t for t in _data()))
    connection = connect_checkpoints(
        objective, a, b, curve="bezier", t=3, align="weights", num_steps=2, lr=0.01
    )
    for name, value in connection.alignment.state.items():
        assert torch.equal(connection.fitted.end[name], value)
    assert connection.curve.settings["align"] == "weights"
    assert list(connection.paths) == ["line", "bezier", "unaligned"]
    with pytest.raises(ValueError, match="expected one of 'weights', 'activations' for align"):
        connect_checkpoints(objective, a, b, curve="line", align="weight")


def test_plot_of_a_connection_draws_the_line_before_and_after_alignment(ax):
    from landscape.alignment import permutation_spec
    from landscape.alignment import permute_state as permute
    from landscape.plotting import plot_paths

    a = gaussian_mlp((3, 6, 2), seed=0)
    b = permute(a.state_dict(), permutation_spec(a), {"0": torch.tensor([3, 5, 0, 1, 4, 2])})
    objective = Objective(a, gaussian_data(20, 3, 2, seed=0))
    connection = connect_checkpoints(objective, a, b, curve="line", t=5, align="weights")
    plot_paths(connection, ax=ax)
    drawn = {line.get_label(): line for line in ax.lines if not line.get_label().startswith("_")}
    before = f"line before alignment (barrier {connection.unaligned.barrier:.3g})"
    assert list(drawn) == ["line after alignment (barrier 0)", before]
    np.testing.assert_array_equal(drawn[before].get_ydata(), connection.unaligned.loss)
    assert drawn[before].get_linestyle() == "--"
    plain = connect_checkpoints(objective, a, b, curve="line", t=5)
    ax.clear()
    plot_paths(plain, ax=ax)
    assert [line.get_label() for line in ax.lines if not line.get_label().startswith("_")] == [
        f"line (barrier {plain.line.barrier:.3g})"
    ]


def test_barrier_matrix_before_and_after_alignment_and_its_heat_map(ax):
    from landscape.alignment import permutation_spec
    from landscape.alignment import permute_state as permute
    from landscape.paths import barrier_matrix
    from landscape.plotting import plot_barrier_matrix

    a, other = gaussian_mlp((3, 6, 2), seed=0), gaussian_mlp((3, 6, 2), seed=1)
    b = permute(a.state_dict(), permutation_spec(a), {"0": torch.tensor([3, 5, 0, 1, 4, 2])})
    objective = Objective(a, gaussian_data(20, 3, 2, seed=0))
    found = barrier_matrix(objective, {"a": a, "b": b, "c": other}, align="weights", t=5)
    assert found.labels == ["a", "b", "c"]
    for i, j, (x, y) in ((0, 1, (a, b)), (0, 2, (a, other)), (1, 2, (b, other))):
        pair = connect_checkpoints(objective, x, y, curve="line", t=5, align="weights")
        assert found.before[i, j] == found.before[j, i] == pair.unaligned.barrier
        assert found.after[i, j] == found.after[j, i] == pair.line.barrier
    assert found.before[0, 1] > 0 and found.after[0, 1] == 0.0  # one basin, modulo symmetry
    assert np.diag(found.before).tolist() == np.diag(found.after).tolist() == [0.0] * 3
    assert found.settings == {"align": "weights", "repair": None, "num_points": 5, "seed": 0}
    plain = barrier_matrix(objective, [a, b], t=5)
    assert plain.labels == ["0", "1"] and plain.after is None
    assert plain.before[0, 1] == found.before[0, 1]
    plot_barrier_matrix(found, ax=ax)
    np.testing.assert_array_equal(ax.images[0].get_array(), found.after)
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["a", "b", "c"]
    assert len(ax.texts) == 9 and ax.get_title() == "barrier after weights alignment"
    ax.clear()
    plot_barrier_matrix(found, ax=ax, which="before")
    np.testing.assert_array_equal(ax.images[0].get_array(), found.before)
    with pytest.raises(ValueError, match="at least two"):
        barrier_matrix(objective, [a])
