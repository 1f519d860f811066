"""Curvature as an optimizer sees it: preconditioners read from optimizers equal the steps
they take, thresholds bound the iteration on quadratics, preconditioned sharpness equals
the dense ``P^-1 H``'s top eigenvalue, batch sharpness its closed form."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from _shared import dense_hessian, dense_hessian_of, gaussian_data, gaussian_mlp
from torch import nn
from torch.func import functional_call

from landscape.objective import Objective
from landscape.optim import (
    StabilityGuard,
    StabilityWarning,
    batch_sharpness,
    gradient_alignment,
    preconditioned_sharpness,
    preconditioner,
    stability_threshold,
)
from landscape.tracking import Tracker, TrackingRun

OPTIMIZERS = {
    "sgd": (torch.optim.SGD, {}),
    "sgd-momentum": (torch.optim.SGD, {"momentum": 0.9}),
    "sgd-dampened-l2": (torch.optim.SGD, {"momentum": 0.8, "dampening": 0.3, "weight_decay": 0.01}),
    "sgd-nesterov": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    "adam": (torch.optim.Adam, {"betas": (0.9, 0.99)}),
    "adam-l2": (torch.optim.Adam, {"weight_decay": 0.01}),
    "adam-amsgrad": (torch.optim.Adam, {"amsgrad": True}),
    "adamw": (torch.optim.AdamW, {"weight_decay": 0.1}),
    "rmsprop": (torch.optim.RMSprop, {}),
    "rmsprop-centered-momentum": (
        torch.optim.RMSprop, {"centered": True, "momentum": 0.9, "weight_decay": 0.01}
    ),
    "adagrad": (torch.optim.Adagrad, {"lr_decay": 0.05, "weight_decay": 0.01}),
}  # fmt: skip


def _setup(name: str, dtype: torch.dtype):
    cls, options = OPTIMIZERS[name]
    model = gaussian_mlp((3, 5, 2)).to(dtype)
    x, y = gaussian_data(16, 3, 2)
    x = x.to(dtype)
    groups = [
        {"params": model[0].parameters(), "lr": 0.01},
        {"params": model[2].parameters(), "lr": 0.005},  # a second learning rate
    ]
    opt = cls(groups, **options)

    def backward():
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()

    return model, opt, backward


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_the_update_read_from_the_optimizer_is_the_step_it_takes(name, dtype, rtol):
    model, opt, backward = _setup(name, dtype)
    for _ in range(3):  # real steps, so that the state is not the initial one
        backward()
        opt.step()
    backward()
    P = preconditioner(opt, model, next_step=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    predicted = P.update(before)
    opt.step()
    assert P.when == "next" and P.step == (0 if name.startswith("sgd") else 4)
    for n, p in model.named_parameters():
        taken = (before[n] - p.detach()).double() / P.lr
        # the step as read from the weights is exact only up to their rounding
        rounding = torch.finfo(dtype).eps * torch.maximum(before[n].abs(), p.detach().abs()) / P.lr
        bound = rtol * taken.abs().max() + rounding.double()
        assert bool(((predicted[n] - taken).abs() <= bound).all()), n


def test_reading_changes_neither_the_optimizer_nor_the_model():
    model, opt, backward = _setup("adam", torch.float64)
    backward()
    opt.step()
    backward()
    state = {k: v.clone() for k, v in opt.state[model[0].weight].items()}
    weights = [p.detach().clone() for p in model.parameters()]
    preconditioner(opt, model, next_step=True)
    assert all(torch.equal(state[k], v) for k, v in opt.state[model[0].weight].items())
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters(), strict=True))


def test_by_default_the_last_steps_preconditioner_is_read():
    model, opt, backward = _setup("adam", torch.float64)
    backward()
    opt.step()
    backward()  # gradients present, but not read: they may be the last step's, stale
    P = preconditioner(opt, model)
    state = opt.state[model[0].weight]
    expected = 0.1 * (state["exp_avg_sq"].sqrt() / math.sqrt(1 - 0.99) + 1e-8)  # betas 0.9, 0.99
    assert P.when == "last" and P.step == 1 and P.direction is None
    torch.testing.assert_close(P.diagonal["0.weight"], expected, rtol=1e-14, atol=0)
    with pytest.raises(ValueError, match="expected a preconditioner of the coming step"):
        P.update(dict(model.named_parameters()))
    opt.zero_grad(set_to_none=True)
    with pytest.raises(ValueError, match="expected gradients for next_step=True"):
        preconditioner(opt, model, next_step=True)


class _Shampoo(torch.optim.Optimizer):
    def __init__(self, params):
        super().__init__(params, {"lr": 0.1})


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: torch.optim.LBFGS(ps),
        lambda ps: _Shampoo(ps),
        lambda ps: torch.optim.Adam(ps, maximize=True),
    ],
    ids=["lbfgs", "shampoo-like", "maximize"],
)
def test_optimizers_without_a_diagonal_preconditioner_are_refused_by_name(make):
    model = nn.Linear(2, 1)
    opt = make(model.parameters())
    with pytest.raises(ValueError, match=f"got {type(opt).__name__}"):
        preconditioner(opt, model)


def test_a_parameter_outside_the_model_is_refused():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=0.1)
    with pytest.raises(ValueError, match="not in Linear"):
        preconditioner(opt, nn.Linear(2, 1))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"momentum": 0.9},
        {"momentum": 0.5, "dampening": 0.4},
        {"momentum": 0.9, "nesterov": True},
    ],
)
def test_the_threshold_separates_convergence_from_divergence_on_a_quadratic(options):
    lr = 0.1
    model = nn.Linear(1, 1, bias=False)
    threshold = preconditioner(
        torch.optim.SGD(model.parameters(), lr=lr, **options), model
    ).threshold
    assert threshold == stability_threshold(lr, **options)
    finals = []
    for factor in (0.9, 1.1):
        w = nn.Parameter(torch.ones(1, dtype=torch.float64))
        opt = torch.optim.SGD([w], lr=lr, **options)
        for _ in range(800):
            opt.zero_grad()
            (0.5 * factor * threshold * w.pow(2)).sum().backward()
            opt.step()
        finals.append(abs(float(w.detach())))
    assert finals[0] < 1e-3 and not finals[1] < 1e3, finals  # nan: overflowed


def test_adam_threshold_is_38_over_lr_for_beta1_0_9():
    model = nn.Linear(2, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    with pytest.raises(ValueError, match="that has taken a step, got one at step 0"):
        preconditioner(opt, model)
    model(torch.ones(1, 2)).sum().backward()
    P = preconditioner(opt, model, next_step=True)
    assert P.threshold == pytest.approx((2 + 2 * 0.9) / (0.01 * (1 - 0.9)), rel=1e-12)


def _dense_operator(model, data, P):
    H, index = dense_hessian(model, data)
    names = [n for n, _ in model.named_parameters()]
    diag = torch.cat([P.diagonal[n].reshape(-1) for n in names])
    l2 = torch.cat([torch.full((len(index[n]),), P.l2[n], dtype=torch.float64) for n in names])
    return H + torch.diag(l2), diag


@pytest.mark.parametrize("name", ["adam", "adam-l2", "rmsprop", "sgd-momentum"])
def test_preconditioned_sharpness_equals_the_dense_top_eigenvalue_of_P_inverse_H(name):
    model, opt, backward = _setup(name, torch.float64)
    x, y = gaussian_data(16, 3, 2)
    for _ in range(5):
        backward()
        opt.step()
    backward()
    P = preconditioner(opt, model, next_step=True)
    result = preconditioned_sharpness(
        Objective(model, (x, y), loss="cross_entropy"), P, num_eigenpairs=2
    )
    H, diag = _dense_operator(model, (x, y), P)
    s = diag.rsqrt()
    symmetric = torch.linalg.eigvalsh(s[:, None] * H * s[None, :]).flip(0)[:2].numpy()
    general = scipy.linalg.eigvals((H / diag[:, None]).numpy())
    assert result.converged
    np.testing.assert_allclose(result.eigenvalues, symmetric, rtol=1e-10)
    assert result.value == pytest.approx(general.real.max(), rel=1e-10)
    assert abs(general.imag).max() < 1e-8 * abs(general).max()
    assert result.ratio == pytest.approx(result.value / P.threshold, rel=1e-14)
    assert result.optimizer == type(opt).__name__
    assert result.step == (0 if name.startswith("sgd") else 6)


def test_preconditioned_sharpness_of_a_hand_given_diagonal_on_a_subset():
    model = gaussian_mlp((3, 5, 2))
    x, y = gaussian_data(16, 3, 2)
    diag = {"2.weight": torch.linspace(0.5, 2.0, 10, dtype=torch.float64).reshape(2, 5)}
    result = preconditioned_sharpness(Objective(model, (x, y), loss="cross_entropy"), diag)

    def loss(w):
        return nn.functional.cross_entropy(functional_call(model, w, (x,)), y)

    H, _ = dense_hessian_of(loss, {"2.weight": model[2].weight})
    s = diag["2.weight"].reshape(-1).rsqrt()
    expected = float(torch.linalg.eigvalsh(s[:, None] * H * s[None, :]).max())
    assert result.names == ("2.weight",) and math.isnan(result.threshold)
    assert result.value == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize(
    "diagonal, match",
    [
        ({"2.weight": torch.zeros(2, 5)}, "positive"),
        ({"nope": torch.ones(2)}, "expected 'nope'"),
        (torch.ones(3), "expected a diagonal of"),
    ],
)
def test_a_bad_diagonal_is_refused(diagonal, match):
    model = gaussian_mlp((3, 5, 2))
    objective = Objective(model, gaussian_data(8, 3, 2), loss="cross_entropy")
    with pytest.raises(ValueError, match=match):
        preconditioned_sharpness(objective, diagonal)


def test_batch_sharpness_of_least_squares_equals_its_closed_form():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 4, generator=g, dtype=torch.float64)
    y = torch.randn(24, generator=g, dtype=torch.float64)
    model = nn.Linear(4, 1, bias=False).double()
    batches = [(x[i : i + 6], y[i : i + 6]) for i in range(0, 24, 6)]
    result = batch_sharpness(Objective(model, batches, loss="mse"), lr=0.05)
    w = model.weight.detach().reshape(-1)
    expected, numerators, denominators = [], [], []
    for xb, yb in batches:  # loss = mean (x w - y)^2: H = 2 X^T X / b, g = 2 X^T (X w - y) / b
        H = 2 * xb.T @ xb / len(xb)
        grad = 2 * xb.T @ (xb @ w - yb) / len(xb)
        numerators.append(float(grad @ H @ grad))
        denominators.append(float(grad @ grad))
        expected.append(numerators[-1] / denominators[-1])
    np.testing.assert_allclose(result.samples, expected, rtol=1e-10)
    assert result.value == pytest.approx(np.mean(expected), rel=1e-10)
    assert result.stderr == pytest.approx(np.std(expected, ddof=1) / 2, rel=1e-10)
    assert result.ratio_of_expectations == pytest.approx(
        sum(numerators) / sum(denominators), rel=1e-10
    )
    assert result.num_batches == 4 and result.batch_size == 6 and result.threshold == 40.0


def test_gradient_alignment_equals_the_dense_projection():
    model = gaussian_mlp((3, 4, 2))
    x, y = gaussian_data(20, 3, 2)
    result = gradient_alignment(Objective(model, (x, y), loss="cross_entropy"), num_eigenpairs=3)
    H, _ = dense_hessian(model, (x, y))
    values, vectors = torch.linalg.eigh(H)
    loss = nn.functional.cross_entropy(model(x), y)
    grad = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, list(model.parameters()))])
    top = vectors[:, -3:]
    expected = float((top.T @ grad).pow(2).sum() / grad.pow(2).sum())
    assert result.converged
    assert result.share == pytest.approx(expected, rel=1e-8)
    np.testing.assert_allclose(result.eigenvalues, values.flip(0)[:3].numpy(), rtol=1e-8)


def _digits_mse(n: int = 500):
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x = torch.tensor(digits.data[:n] / 16.0, dtype=torch.float32)
    return x, nn.functional.one_hot(torch.tensor(digits.target[:n]), 10).float()


def _adam_run(lr: float, guard: StabilityGuard, num_steps: int = 800):
    """Full-batch Adam (beta1 0.9) on 500 digits, MSE, a 64-20-20-10 tanh MLP, tracked every
    50 steps of the second half with the optimizer and the guard; the run."""
    x, y = _digits_mse()
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 20), nn.Tanh(), nn.Linear(20, 20), nn.Tanh(), nn.Linear(20, 10)
    )
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    tracker = Tracker(
        (x, y), loss="mse", every=50, measures=["preconditioned_sharpness", "lambda_max"],
        optimizer=opt, guard=guard, tol=1e-3, lr=lr,
    )  # fmt: skip
    for step in range(num_steps + 1):
        if step >= num_steps // 2:
            tracker.log(model, step)
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    run = tracker.run
    ratios = (
        run.values["preconditioned_sharpness"] / run.values["preconditioned_sharpness_threshold"]
    )
    return ratios, run.values["lambda_max"] * lr / 2


def test_full_batch_adam_trains_at_the_adaptive_edge_of_stability(one_thread):
    # Cohen et al. 2022: lambda_1(P^-1 H) settles at (2 + 2 beta1) / (lr (1 - beta1)) = 38/lr
    fired = []
    guard = StabilityGuard(fraction=0.9, patience=3, action=lambda *a: fired.append(a[3]))
    ratios, raw = _adam_run(0.005, guard)
    print(f"lambda_1(P^-1 H) / (38/lr): median {np.median(ratios):.3f} of {np.round(ratios, 3)}; "
          f"raw lambda_max {np.round(raw, 4)} of 2/lr; the guard fired at {fired}")  # fmt: skip
    assert abs(np.median(ratios) - 1) < 0.1
    assert fired  # the guard sees the edge


def test_at_a_tenth_of_the_learning_rate_adam_stays_below_the_edge_and_the_guard_is_quiet(
    one_thread,
):
    guard = StabilityGuard(fraction=0.9, patience=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StabilityWarning)
        ratios, _ = _adam_run(0.0005, guard)
    print(f"lr 0.0005: lambda_1(P^-1 H) / (38/lr) {np.round(ratios, 3)}")
    assert max(ratios) < 0.9


def test_the_guard_fires_after_patience_logs_above_the_fraction_and_rearms():
    calls = []
    guard = StabilityGuard(fraction=0.9, patience=2, action=lambda *a: calls.append(a))
    values = [0.5, 0.95, 0.97, 0.99, 0.5, 0.95, 0.96]
    fired = [guard.update("m", v, threshold=1.0, step=i) for i, v in enumerate(values)]
    assert fired == [False, False, True, False, False, False, True]
    assert [c[3] for c in calls] == [2, 6]
    assert not guard.update("m", 5.0, threshold=float("nan"), step=7)  # no threshold known


def test_the_guard_warns_without_an_action():
    guard = StabilityGuard(patience=1, measures=("preconditioned_sharpness",))
    assert not guard.update("lambda_max", 10.0, threshold=1.0, step=0)  # not watched
    with pytest.warns(StabilityWarning, match="preconditioned_sharpness stayed above 0.9"):
        guard.update("preconditioned_sharpness", 10.0, threshold=1.0, step=0)


@pytest.mark.parametrize("options", [{"fraction": 0}, {"patience": 0}, {"action": 3}])
def test_bad_guard_settings_are_refused(options):
    with pytest.raises((ValueError, TypeError), match="expected"):
        StabilityGuard(**options)


def test_the_registered_measures_are_the_functions_with_their_thresholds():
    from landscape.sharpness import sharpness

    model, opt, backward = _setup("sgd-momentum", torch.float64)
    backward()
    opt.step()
    x, y = gaussian_data(16, 3, 2)
    objective = Objective(model, (x, y), loss="cross_entropy", batch_size=4)
    names = ["preconditioned_sharpness", "batch_sharpness", "gradient_share"]
    found = sharpness(objective, names, optimizer=opt, lr=0.01, num_eigenpairs=2, progress=False)
    direct = preconditioned_sharpness(objective, opt)
    assert found["preconditioned_sharpness"].value == pytest.approx(direct.value, rel=1e-10)
    assert found["preconditioned_sharpness"].extra["threshold"] == direct.threshold
    assert found["preconditioned_sharpness"].settings["optimizer"] == "SGD"
    batches = batch_sharpness(objective, lr=0.01)
    assert found["batch_sharpness"].value == batches.value
    assert found["batch_sharpness"].stderr == batches.stderr
    assert found["batch_sharpness"].extra["threshold"] == 200.0
    share = gradient_alignment(objective, num_eigenpairs=2).share
    assert found["gradient_share"].value == pytest.approx(share, rel=1e-8)
    with pytest.raises(ValueError, match="expected optimizer="):
        sharpness(objective, ["preconditioned_sharpness"], progress=False)
    with pytest.raises(TypeError, match="expected a torch optimizer"):
        sharpness(objective, ["preconditioned_sharpness"], optimizer="adam", progress=False)


def test_plot_tracking_draws_the_logged_threshold_on_a_log_axis_and_skips_nan_rows(ax):
    from landscape.plotting import plot_tracking

    steps = np.array([0, 10, 20, 30])
    run = TrackingRun(
        steps,
        {
            "preconditioned_sharpness": np.array([1.0, 30.0, 370.0, 385.0]),
            "preconditioned_sharpness_threshold": np.full(4, 380.0),
            "trace": np.array([2.0, np.nan, 3.0, np.nan]),
        },
        {"preconditioned_sharpness": np.zeros(4), "trace": np.array([0.1, np.nan, 0.1, np.nan])},
        {"lr": 0.1},
    )
    plot_tracking(run, "preconditioned_sharpness", ax)
    measure, threshold = ax.lines[:2]
    assert ax.get_yscale() == "log"
    assert threshold.get_label().startswith("threshold (380")
    np.testing.assert_array_equal(threshold.get_ydata(), np.full(4, 380.0))
    ax.clear()
    plot_tracking(run, "trace", ax)
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [0, 20])
    assert ax.get_yscale() == "linear"
