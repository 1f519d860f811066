"""Sharpness measures against closed forms, invariances, storage, and the model left
untouched. (Box and ball maxima: ``test_sharpness_worst_case.py``; error bars:
``test_sharpness_intervals.py``; settings: ``test_sharpness_registry.py``.)"""

from __future__ import annotations

import copy
import importlib
import math
import os
import warnings

import h5py
import numpy as np
import pytest
import torch
from _shared import TEST_DATA
from _sharpness_cases import DTYPE, closure_quadratic, linear_quadratic, spd
from torch import nn

from landscape.objective import Objective
from landscape.sharpness import (
    MEASURES,
    NotAMinimumWarning,
    SharpnessResult,
    load_sharpness,
    measure_average_case,
    measure_fisher_rao,
    measure_keskar,
    measure_pacbayes,
    measure_relative_flatness,
    measure_worst_case,
    save_sharpness,
    sharpness,
)
from landscape.sharpness._random import draw_like, generator_for, normal_draws

DATA = TEST_DATA


def seeded(model: nn.Module, seed: int) -> nn.Module:
    """``model`` in float64 with every parameter drawn from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    model = model.to(DTYPE)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=DTYPE) / math.sqrt(p.shape[-1]))
    return model


quadratic = closure_quadratic

H_EIGS = [4.0, 2.0, 1.0, 0.5, 0.25, 0.1]


@pytest.fixture
def quad() -> tuple[Objective, torch.Tensor]:
    h = spd(H_EIGS)
    c = torch.linspace(-1, 1, len(H_EIGS), dtype=DTYPE)
    return quadratic(h, c), h


def relu_mlp(seed: int = 0) -> nn.Sequential:
    return seeded(
        nn.Sequential(
            nn.Linear(5, 8, bias=False),
            nn.ReLU(),
            nn.Linear(8, 8, bias=False),
            nn.ReLU(),
            nn.Linear(8, 3, bias=False),
        ),
        seed,
    )


def classification_data(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=DTYPE), torch.randint(0, 3, (n,), generator=g)


# ---------------------------------------------------------------- closed forms: quadratic
def test_worst_l2_on_quadratic_reaches_but_never_exceeds_closed_form(quad):
    objective, h = quad
    rho = 0.1
    exact = rho**2 * max(H_EIGS) / 2
    result = measure_worst_case(objective, rho=rho, seed=3)
    assert result.name == "worst_l2"
    assert result.value <= exact * (1 + 1e-12)
    assert result.value >= 0.999 * exact
    # one batch: no standard error can be estimated
    assert math.isnan(result.stderr) and result.interval is None and result.settings["seed"] == 3
    assert result.extra["num_agreed"] == 3  # every restart finds the top eigenvector


def test_average_case_on_quadratic_matches_half_trace(quad):
    objective, h = quad
    rho = 0.1
    result = measure_average_case(objective, rho=rho, num_samples=400, seed=1)
    exact = rho**2 * float(torch.trace(h)) / 2
    assert result.stderr > 0
    assert abs(result.value - exact) <= 4 * result.stderr
    assert result.interval[0] < exact < result.interval[1]
    assert result.samples.shape == (400,)
    # each sample is the exact rise 1/2 delta^T H delta of its draw
    g = torch.Generator().manual_seed(1)
    z = torch.randn(6, generator=g, dtype=DTYPE) * rho
    assert result.samples[0] == pytest.approx(float(0.5 * z @ h @ z), rel=1e-10)


def test_pacbayes_sigma_on_quadratic(quad):
    objective, h = quad
    target = 0.01
    result = measure_pacbayes(objective, target=target, seed=2)
    exact = math.sqrt(2 * target / float(torch.trace(h)))
    sigma = result.extra["sigma"]
    assert abs(sigma - exact) <= 4 * result.extra["sigma_stderr"] + 2e-3 * exact
    assert result.value == pytest.approx(sigma**-2)
    assert result.interval[0] < exact**-2 < result.interval[1]
    assert result.samples.mean() <= target  # the reported sigma keeps within the target
    assert result.samples.mean() >= target * (1 - 3e-3)  # ... and is the root to rtol
    # at the minimum of a quadratic the rise is sigma^2 z^T H z / 2, so the estimate is
    # 1 / sigma^2 = mean(z^T H z) / (2 target) up to the bracket's width
    g = torch.Generator().manual_seed(2)
    z = torch.stack([torch.randn(6, generator=g, dtype=DTYPE) for _ in range(100)])
    direct = float(torch.einsum("ki,ij,kj->k", z, h, z).mean()) / (2 * target)
    assert result.value == pytest.approx(direct, rel=3e-3)


def test_pacbayes_mag_floor_above_target_gives_inf(quad):
    objective, _ = quad
    result = measure_pacbayes(objective, magnitude_aware=True, target=1e-3, eps=1.0, num_samples=4)
    assert result.extra["sigma"] == 0.0 and result.value == math.inf


def test_keskar_on_diagonal_quadratic_is_the_box_corner():
    diag = torch.tensor([3.0, 1.0, 0.5, 2.0], dtype=DTYPE)
    c = torch.tensor([0.5, -2.0, 0.0, 1.0], dtype=DTYPE)
    eps = 1e-2
    result = measure_keskar(quadratic(torch.diag(diag), c), eps=eps, seed=0)
    exact = 100 * float((diag * (eps * (c.abs() + 1)) ** 2).sum()) / 2 / (1 + 0)
    assert result.value == pytest.approx(exact, rel=1e-9)
    assert result.stderr == 0.0


# ---------------------------------------------------------------- closed forms: logistic
def logistic(x: torch.Tensor, t: torch.Tensor) -> tuple[Objective, torch.Tensor]:
    model = seeded(nn.Linear(x.shape[1], 1), 1)
    margins = (2 * t - 1) * (x @ model.weight.detach().reshape(-1) + model.bias.detach())
    return Objective(model, (x, t), loss="bce"), margins


def worst_logistic(margins: torch.Tensor, x: torch.Tensor, rho: float) -> torch.Tensor:
    """``max_{||delta||_2 <= rho} log(1 + exp(-y (w + delta) . x~))`` minus the loss at ``w``,
    with ``x~ = (x, 1)`` since the bias is perturbed like any weight."""
    reach = rho * torch.sqrt((x**2).sum(dim=1) + 1)
    return torch.log1p(torch.exp(-margins + reach)) - torch.log1p(torch.exp(-margins))


def test_worst_l2_on_one_logistic_example():
    x = torch.tensor([[0.3, -1.2, 2.0]], dtype=DTYPE)
    t = torch.tensor([1.0], dtype=DTYPE)
    objective, margins = logistic(x, t)
    rho = 0.5
    result = measure_worst_case(objective, rho=rho)
    # ten Auto-PGD steps from a random point of the sphere: the maximum to 1e-6
    assert result.value == pytest.approx(float(worst_logistic(margins, x, rho)[0]), rel=1e-6)


def test_m_sharpness_averages_per_batch_values():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, generator=g, dtype=DTYPE)
    t = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0], dtype=DTYPE)
    objective, margins = logistic(x, t)
    result = measure_worst_case(objective, rho=0.3, batch_size=1)
    exact = worst_logistic(margins, x, 0.3).numpy()
    np.testing.assert_allclose(result.samples, exact, rtol=1e-6)
    assert result.value == pytest.approx(exact.mean(), rel=1e-6)
    assert result.stderr == pytest.approx(exact.std(ddof=1) / math.sqrt(6), rel=1e-6)
    assert result.interval[0] < result.value < result.interval[1]
    assert result.settings["batch_size"] == 1 and result.settings["num_batches"] == 6
    assert len(measure_worst_case(objective, rho=0.3, batch_size=4, num_batches=1).samples) == 1


# ---------------------------------------------------------------- rescaling invariance
@pytest.fixture(scope="module")
def rescaled_pair() -> tuple[Objective, Objective]:
    model = relu_mlp()
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        scaled[2].weight.mul_(4.0)
        scaled[4].weight.div_(4.0)
    data = classification_data()
    return Objective(model, data), Objective(scaled, data)


INVARIANT = [
    ("adaptive_worst_l2", {"rho": 0.3, "num_ascent_steps": 10}),
    ("adaptive_worst_linf", {"rho": 0.05, "num_ascent_steps": 10}),
    ("adaptive_avg_l2", {"rho": 0.2, "num_samples": 10}),
    ("fisher_rao", {}),
    ("relative_flatness", {}),
    ("relative_flatness", {"layer": "2.weight"}),
]


@pytest.mark.parametrize(("name", "settings"), INVARIANT)
def test_adaptive_measures_are_invariant_to_relu_rescaling(rescaled_pair, name, settings):
    original, scaled = rescaled_pair
    assert original()["loss"] == pytest.approx(scaled()["loss"], rel=1e-12)
    a = sharpness(original, [name], seed=5, **settings)[name]
    b = sharpness(scaled, [name], seed=5, **settings)[name]
    assert a.value != 0
    assert b.value == pytest.approx(a.value, rel=1e-8)


@pytest.mark.parametrize(
    ("name", "settings"), [("lambda_max", {}), ("worst_l2", {"rho": 0.3, "num_ascent_steps": 10})]
)
def test_standard_measures_change_under_relu_rescaling(rescaled_pair, name, settings):
    original, scaled = rescaled_pair
    a = sharpness(original, [name], **settings)[name]
    b = sharpness(scaled, [name], **settings)[name]
    assert abs(b.value - a.value) > 1e-3 * abs(a.value)


def test_fisher_rao_matches_euler_form_for_bias_free_relu_net():
    """For a bias-free ReLU net of 3 layers, <w, grad l> = 3 <dl/df, f>."""
    model = relu_mlp(seed=2)
    x, y = classification_data(n=12, seed=2)
    result = measure_fisher_rao(Objective(model, (x, y)))
    logits = model(x).detach().requires_grad_(True)
    loss = nn.functional.cross_entropy(logits, y, reduction="sum")
    (dl_df,) = torch.autograd.grad(loss, logits)
    exact = float(((3 * (dl_df * logits.detach()).sum(dim=1)) ** 2).mean())
    assert result.value == pytest.approx(exact, rel=1e-10)


def test_relative_flatness_matches_a_dense_hessian():
    model = relu_mlp(seed=3)
    data = classification_data(n=10, seed=3)
    weight = model[4].weight.detach()

    def loss(w: torch.Tensor) -> torch.Tensor:
        hidden = model[:4](data[0]).detach()
        return nn.functional.cross_entropy(hidden @ w.T, data[1])

    dense = torch.autograd.functional.hessian(loss, weight)  # (3, 8, 3, 8)
    exact = sum(
        float(weight[s] @ weight[t]) * float(sum(dense[s, j, t, j] for j in range(8)))
        for s in range(3)
        for t in range(3)
    )
    result = measure_relative_flatness(Objective(model, data))
    assert result.settings["layer"] == "4.weight"
    assert result.value == pytest.approx(exact, rel=1e-10)


# ---------------------------------------------------------------- contract
def test_unknown_name_and_bad_settings_raise_clear_errors(quad):
    objective, _ = quad
    with pytest.raises(ValueError, match="unknown sharpness measure.*valid names.*worst_l2"):
        sharpness(objective, ["sharpest"])
    with pytest.raises(ValueError, match="unknown setting"):
        sharpness(objective, ["worst_l2"], rh0=0.1)
    for rho in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="expected a positive finite rho"):
            sharpness(objective, ["worst_l2"], rho=rho)
    with pytest.raises(ValueError, match="num_samples"):
        sharpness(objective, ["avg_l2"], num_samples=0)
    with pytest.raises(ValueError, match="expected p 2 or math.inf, got 1"):
        measure_worst_case(objective, p=1)
    three = Objective(objective.model, [torch.zeros(1)] * 3, batch_loss=objective.batch_loss)
    with pytest.raises(ValueError, match="batch_size needs batches"):
        measure_worst_case(three, batch_size=1)
    with pytest.raises(ValueError, match="fisher_rao needs"):
        measure_fisher_rao(objective)
    with pytest.raises(
        ValueError, match="expected an objective with accuracy for criterion='accuracy'"
    ):
        measure_pacbayes(objective, criterion="accuracy")


def test_pacbayes_accuracy_criterion_keeps_the_drop_within_target():
    x, _ = classification_data()
    model = seeded(nn.Linear(5, 3, bias=False), 0)
    objective = Objective(model, (x, model(x).argmax(dim=1)))  # accuracy 1 at the weights
    result = measure_pacbayes(objective, criterion="accuracy", target=0.1, num_samples=5)
    assert result.settings["criterion"] == "accuracy"
    assert result.extra["sigma"] > 0 and result.samples.mean() <= 0.1


def test_same_seed_same_value_other_seed_other_value(quad):
    objective, _ = quad
    a = measure_average_case(objective, num_samples=5, seed=0)
    assert measure_average_case(objective, num_samples=5, seed=0).value == a.value
    assert measure_average_case(objective, num_samples=5, seed=1).value != a.value


class Net(nn.Module):
    """BatchNorm and Dropout, so that evaluating in the wrong mode would show."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def test_every_measure_leaves_the_model_unchanged(tmp_path):
    model = seeded(Net(), 0)
    model(classification_data(n=16, seed=4)[0])  # non-trivial running statistics
    model.train()
    model.body[2].eval()  # a mix of flags, all of which must survive
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    objective = Objective(model, classification_data(n=20, seed=5))
    settings = {
        "num_samples": 3,
        "seed": 1,
        "num_probes": 9,
        "batch_size": 10,
        "num_ascent_steps": 5,
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.1),  # preconditioned_sharpness
    }
    results = sharpness(objective, list(MEASURES), **settings)
    assert list(results) == list(MEASURES)
    for name, result in results.items():
        assert isinstance(result, SharpnessResult) and result.name == name
        assert math.isfinite(result.value), name
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [m.training for m in model.modules()] == flags

    path = tmp_path / "sharp.h5"
    save_sharpness(path, results)
    loaded = load_sharpness(path)
    assert list(loaded) == list(results)
    for name, result in results.items():
        assert loaded[name] == result, name  # every field, interval and samples included
        if MEASURES[name].sampled:
            assert result.interval[0] <= result.value <= result.interval[1], name
    for name in ("lambda_max", "keskar", "fisher_rao", "relative_flatness"):
        assert results[name].interval is None and results[name].stderr == 0
    with pytest.raises(ValueError, match="overwrite=True"):
        save_sharpness(path, {"rise": results["rise"]})
    save_sharpness(path, {"rise": results["keskar"]}, overwrite=True)
    assert load_sharpness(path)["rise"].name == "keskar"


def test_files_of_version_0_1_load(tmp_path):
    """``sharpness_v0_1.h5`` was written by landscape 0.1.0 (``data/make_sharpness_v0_1.py``):
    every group loads with its settings (None included), extras and samples, no interval."""
    path = os.path.join(DATA, "sharpness_v0_1.h5")
    loaded = load_sharpness(path)
    assert list(loaded) == ["keskar", "worst_l2", "avg_l2", "pacbayes_mag", "relative_flatness"]
    with h5py.File(path, "r") as f:
        for name, result in loaded.items():
            attrs = f["sharpness"][name].attrs
            assert result.name == name and result.value == attrs["value"]
            assert result.stderr == attrs["stderr"] and result.interval is None
    assert loaded["keskar"].settings == {
        "eps": 1e-3,
        "subspace_dim": None,
        "num_iters": 10,
        "seed": 0,
    }
    assert set(loaded["keskar"].extra) == {"loss", "max_loss"}
    assert loaded["avg_l2"].samples.shape == (4,) and loaded["keskar"].samples is None
    assert loaded["relative_flatness"].settings == {"layer": "2.weight"}
    copy_path = tmp_path / "again.h5"  # what loads from 0.1 saves and loads unchanged now
    save_sharpness(copy_path, loaded)
    assert load_sharpness(copy_path) == loaded


# ---------------------------------------------------------------- bars and guardrails
def test_a_measure_shows_a_bar_on_stderr_unless_progress_is_false(quad, capsys):
    objective, _ = quad
    sharpness(objective, ["avg_l2", "worst_l2"], num_samples=4)
    captured = capsys.readouterr()
    assert captured.out == "" and "avg_l2: " in captured.err and "4/4" in captured.err
    assert "worst_l2: " in captured.err and "33/33" in captured.err  # 3 restarts x 11
    sharpness(objective, ["avg_l2", "worst_l2"], num_samples=4, progress=False)
    measure_keskar(objective, num_restarts=2, progress=False)
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(
    ("names", "settings"),
    [
        (["worst_l2"], {}),
        (["adaptive_worst_linf"], {}),
        (["keskar"], {"num_restarts": 3}),
        (["avg_l2", "rise"], {"num_samples": 10}),
    ],
)
def test_a_closed_form_minimum_raises_no_warning(quad, names, settings):
    objective, _ = quad
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sharpness(objective, names, progress=False, **settings)


@pytest.mark.parametrize("name", ["worst_l2", "worst_linf", "adaptive_worst_l2", "keskar"])
def test_the_gradient_far_from_a_minimum_is_flagged(name):
    problem = linear_quadratic(4, seed=0, away=1.0)  # a random point of a quadratic
    with pytest.warns(NotAMinimumWarning, match=f"^{name}: the gradient makes most of the rise"):
        sharpness(problem.objective, [name], progress=False, num_restarts=2)


@pytest.mark.parametrize("name", ["avg_l2", "adaptive_avg_l2"])
def test_a_mean_rise_below_zero_is_flagged(name):
    c = torch.linspace(-1, 1, 4, dtype=DTYPE)
    objective = quadratic(-spd([3.0, 2.0, 1.0, 0.5]), c)  # a maximum: every point nearby is lower
    with pytest.warns(NotAMinimumWarning, match=f"^{name}: the mean rise -.* below zero"):
        result = sharpness(objective, [name], progress=False, num_samples=10)[name]
    assert result.value < -2 * result.stderr


def test_the_first_order_rise_that_is_flagged_is_rho_times_the_dual_norm():
    problem = linear_quadratic(3, seed=1, away=1.0)
    grad = problem.hessian @ problem.offset
    with pytest.warns(NotAMinimumWarning) as caught:
        measure_worst_case(problem.objective, rho=0.01, num_restarts=1, progress=False)
        measure_worst_case(problem.objective, p=math.inf, rho=0.01, progress=False)
    linear = [float(str(w.message).split("first-order rise ")[1].split(" ")[0]) for w in caught]
    expected = [0.01 * np.linalg.norm(grad), 0.01 * np.abs(grad).sum()]
    np.testing.assert_allclose(linear, expected, rtol=1e-3)  # printed to 4 digits


def test_a_standard_error_from_one_batch_or_sample_is_nan():
    objective = quadratic(spd([2.0, 1.0]), torch.zeros(2, dtype=DTYPE))
    worst = measure_worst_case(objective, rho=0.1, progress=False)
    average = measure_average_case(objective, num_samples=1, progress=False)
    assert math.isnan(worst.stderr) and worst.interval is None
    assert math.isnan(average.stderr) and all(math.isnan(v) for v in average.interval)


# ---------------------------------------------------------------- sizes refused before any work
def counted(model: nn.Module) -> list[int]:
    """A list whose length is the number of forward passes of ``model`` from now on."""
    calls: list[int] = []
    model.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_relative_flatness_refuses_a_layer_over_the_bound_before_any_forward(monkeypatch):
    module = importlib.import_module("landscape.sharpness.relative_flatness")
    model = relu_mlp()
    objective = Objective(model, classification_data(n=10))
    calls = counted(model)
    monkeypatch.setattr(module, "MAX_HESSIAN_BYTES", 24**2 * 8 - 1)  # 4.weight: 24 params
    with pytest.raises(ValueError, match=r"'4\.weight': 24 parameters.*layer=.*'trace'"):
        measure_relative_flatness(objective, progress=False)
    assert calls == []
    objective(objective.base_state)
    assert calls  # the hook counts the objective's forward passes


def test_keskar_refuses_a_full_space_over_the_bound_before_any_forward(monkeypatch):
    module = importlib.import_module("landscape.sharpness.keskar")
    model = relu_mlp()
    objective = Objective(model, classification_data(n=10))
    calls = counted(model)
    monkeypatch.setattr(module, "MAX_FULL_SPACE_PARAMS", 10)
    with pytest.raises(
        ValueError, match=r"all 128 perturbed parameters.*subspace_dim=.*worst_linf"
    ):
        measure_keskar(objective, progress=False)
    assert calls == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotAMinimumWarning)  # a random net is not at a minimum
        measure_keskar(objective, subspace_dim=2, num_iters=1, num_restarts=1, progress=False)
    assert calls  # a subspace is not refused


# ---------------------------------------------------------------- noise draws
def test_cpu_draws_are_the_float64_cpu_draws_of_the_seed():
    like = {"a": torch.zeros(3, 2, dtype=torch.float32), "b": torch.zeros(4, dtype=DTYPE)}
    g = torch.Generator().manual_seed(7)
    expected = [
        {
            n: torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype)
            for n, t in like.items()
        }
        for _ in range(2)
    ]
    draws = list(normal_draws(like, 7, 2))
    for draw, old in zip(draws, expected, strict=True):
        for n in like:
            assert draw[n].dtype == like[n].dtype
            assert torch.equal(draw[n], old[n])
    g = torch.Generator().manual_seed(7)
    uniform = 2 * torch.rand(4, generator=g, dtype=torch.float64) - 1
    assert torch.equal(draw_like({"b": like["b"]}, generator_for(like, 7), "uniform")["b"], uniform)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_draws_are_made_on_the_device_and_reproducible():
    like = {"a": torch.zeros(3, 2, device="cuda"), "b": torch.zeros(4, device="cuda", dtype=DTYPE)}
    generator = generator_for(like, 7)
    assert generator.device.type == "cuda"
    first, again = list(normal_draws(like, 7, 2)), list(normal_draws(like, 7, 2))
    for draw, same in zip(first, again, strict=True):
        for n, t in like.items():
            assert draw[n].device == t.device and draw[n].dtype == t.dtype
            assert torch.equal(draw[n], same[n])
    assert not torch.equal(first[0]["a"], first[1]["a"])
    uniform = draw_like(like, generator, "uniform")
    assert all(bool(t.abs().max() <= 1) for t in uniform.values())
