"""``params=``: one selection grammar for directions, surfaces, the Hessian and sharpness."""

from __future__ import annotations

import h5py
import pytest
import torch
from torch import nn
from torch.func import functional_call

from landscape.directions import interpolation_direction, random_directions
from landscape.evaluate import Objective
from landscape.hessian import HessianOperator
from landscape.params import select_names, select_params
from landscape.sharpness import NotAMinimumWarning, measure_worst_case, sharpness
from landscape.surface import compute_surface, load_surface

DTYPE = torch.float64


class Net(nn.Module):
    """``body.0`` and ``body.2`` (Linear), a ``head``, and an ``extra`` weight that the
    output does not depend on."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4))
        self.head = nn.Linear(4, 1)
        self.extra = nn.Parameter(torch.randn(2, 2))

    def forward(self, x):
        return self.head(torch.tanh(self.body(x)))


def net_and_data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 3, generator=g, dtype=DTYPE)
    return Net().double(), (x, torch.randn(16, 1, generator=g, dtype=DTYPE))


def test_selection_grammar_names_globs_callables_trainable():
    model, _ = net_and_data()
    state = dict(model.named_parameters())
    assert select_names(state, "*.0.*") == ["body.0.weight", "body.0.bias"]
    assert select_names(state, ["head.bias", "body.2.*"]) == [
        "body.2.weight", "body.2.bias", "head.bias"
    ]  # fmt: skip
    assert select_names(state, lambda n, t: t.dim() > 1 and "body" in n) == [
        "body.0.weight", "body.2.weight"
    ]  # fmt: skip
    assert select_names(state, "all") == select_names(state, None) == list(state)
    model.body.requires_grad_(False)
    assert select_params(model, "trainable") == ["extra", "head.weight", "head.bias"]
    assert select_params(model, ["trainable", "body.0.bias"])[:2] == ["extra", "body.0.bias"]


def test_a_pattern_matching_nothing_lists_close_names():
    state = dict(net_and_data()[0].named_parameters())
    with pytest.raises(ValueError, match=r"'head.wieght' matches no tensor; close names: .*"
                       r"'head.weight'"):  # fmt: skip
        select_names(state, ["head.bias", "head.wieght"])
    with pytest.raises(ValueError, match="selected no tensor"):
        select_names(state, lambda n, t: False)
    with pytest.raises(TypeError, match="expected None, 'all', .* for params, got int"):
        select_names(state, 3)


def test_directions_hold_only_the_selected_tensors():
    model, _ = net_and_data()
    dirs = random_directions(model, params="*.0.*", ignore="none")
    assert sorted(dirs.x) == sorted(dirs.y) == ["body.0.bias", "body.0.weight"]
    assert dirs.settings["params"] == ["body.0.weight", "body.0.bias"]
    assert "params" not in random_directions(model).settings  # as 0.1 wrote it
    other = Net().double()
    with torch.no_grad():
        other.head.weight.add_(1.0)
    assert list(interpolation_direction(model, other, params="head.*")) == [
        "head.weight", "head.bias"
    ]  # fmt: skip


def test_a_surface_moves_only_the_selection(tmp_path):
    model, data = net_and_data()
    dirs = random_directions(model, seed=3, ignore="none")  # over every weight
    xs, ys = [-0.5, 0.0, 1.0], [0.0, 0.7]
    path = tmp_path / "s.h5"
    surface = compute_surface(
        model, data, dirs, xs, ys, loss="mse", params="*.0.*", path=path, progress=False
    )
    assert surface.attrs["params"] == ["body.0.weight", "body.0.bias"]
    base = dict(model.named_parameters())
    for i, a in enumerate(xs):
        for j, b in enumerate(ys):
            point = {n: t + (a * dirs.x[n] + b * dirs.y[n] if ".0." in n else 0) for n, t in
                     base.items()}  # fmt: skip
            with torch.no_grad():
                outputs = functional_call(model, point, (data[0],))
            expected = torch.mean((outputs - data[1]) ** 2)
            assert surface["loss"][i, j] == pytest.approx(float(expected), rel=1e-12)
    with h5py.File(path) as f:
        assert sorted(f["directions/x"]) == ["body.0.bias", "body.0.weight"]
    assert load_surface(path) == surface


def test_the_selection_is_part_of_the_resume_identity(tmp_path):
    model, data = net_and_data()
    dirs = random_directions(model, seed=0)
    path = tmp_path / "s.h5"
    run = dict(loss="mse", path=path, progress=False)
    first = compute_surface(model, data, dirs, [0.0, 1.0], params="head.*", **run)
    assert compute_surface(model, data, dirs, [0.0, 1.0], params=["head.*"], **run) == first
    with pytest.raises(ValueError, match="params: file has"):
        compute_surface(model, data, dirs, [0.0, 1.0], params="body.*", **run)
    with pytest.raises(ValueError, match="params: file has"):
        compute_surface(model, data, dirs, [0.0, 1.0], **run)
    # a file written before params= existed resumes as a selection of everything
    compute_surface(model, data, dirs, [0.0, 1.0], overwrite=True, **run)
    with h5py.File(path, "a") as f:
        del f.attrs["params"]
    compute_surface(model, data, dirs, [0.0, 1.0], **run)
    with pytest.raises(ValueError, match="params: file has none"):
        compute_surface(model, data, dirs, [0.0, 1.0], params="head.*", **run)


def test_measures_with_params_perturb_only_the_selection():
    model, data = net_and_data()
    objective = Objective(model, data, loss="mse")
    names = ["lambda_max", "trace", "worst_l2", "avg_l2", "adaptive_avg_l2", "rise",
             "fisher_rao", "keskar"]  # fmt: skip
    results = sharpness(objective, names, params="extra", num_samples=4, progress=False)
    for name, result in results.items():  # the loss does not depend on ``extra``
        assert result.value == 0.0, name
        assert result.settings["params"] == ["extra"], name
    op = HessianOperator(objective, params="body.2.*")
    assert op.names == ("body.2.weight", "body.2.bias") and op.settings["params"] == list(op.names)


def test_avg_and_worst_case_on_one_block_of_a_quadratic():
    """A linear model with MSE: the loss is quadratic in (weight, bias), ``H_bb = 2`` for the
    bias, so the average rise is ``rho^2`` and the worst is ``|g_b| rho + rho^2``."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g, dtype=DTYPE)
    y = x.sum(1, keepdim=True) + 0.3 + 0.1 * torch.randn(40, 1, generator=g, dtype=DTYPE)
    model = nn.Linear(3, 1).double()
    objective = Objective(model, (x, y), loss="mse")
    rho = 0.2
    avg = sharpness(objective, "avg_l2", params="bias", rho=rho, num_samples=400,
                    progress=False)["avg_l2"]  # fmt: skip
    assert abs(avg.value - rho**2) < 4 * avg.stderr
    grad = float(2 * (model(x) - y).detach().mean())
    with pytest.warns(NotAMinimumWarning):  # the bias is off its minimum: g_b != 0
        worst = measure_worst_case(objective, params=["bias"], rho=rho, progress=False)
    assert worst.value == pytest.approx(abs(grad) * rho + rho**2, rel=1e-8)
