"""The measure registry and the checks of ``sharpness()`` settings (issue 8, item 9)."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from _shared import dense_hessian
from _sharpness_cases import DTYPE, Point
from torch import nn

from landscape.objective import Objective
from landscape.sharpness import MEASURES, SETTINGS, WarmStart, check_settings, sharpness


class CountingLoss:
    """A ``batch_loss`` closure that counts its calls, to see that nothing ran."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, model: nn.Module, batch: object) -> tuple[torch.Tensor, int]:
        self.calls += 1
        return 0.5 * (model.w**2).sum(), 1


@pytest.fixture
def counted() -> tuple[Objective, CountingLoss]:
    loss = CountingLoss()
    return Objective(Point(torch.ones(3, dtype=DTYPE)), [torch.zeros(1)], batch_loss=loss), loss


def objective_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, generator=g, dtype=DTYPE)
    return x, torch.randint(0, 2, (8,), generator=g)


def classifier() -> Objective:
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(DTYPE)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=DTYPE))
    return Objective(model, objective_data())


def test_registry_lists_the_contract_names_in_order():
    assert list(MEASURES) == [
        "lambda_max", "trace", "keskar", "worst_l2", "worst_linf", "adaptive_worst_l2",
        "adaptive_worst_linf", "avg_l2", "adaptive_avg_l2", "pacbayes", "pacbayes_mag",
        "fisher_rao", "relative_flatness", "rise", "preconditioned_sharpness", "batch_sharpness",
        "gradient_share",
    ]  # fmt: skip


@pytest.mark.parametrize("name", list(MEASURES))
def test_registered_settings_match_the_measure_function(name):
    """Each registered setting is a keyword-only option of the function with the same
    default, and the options the name fixes are options of the function too."""
    measure = MEASURES[name]
    params = inspect.signature(measure.function).parameters
    for key, default in measure.defaults.items():
        assert key in SETTINGS
        assert params[key].kind is inspect.Parameter.KEYWORD_ONLY
        assert params[key].default == default, key
    assert set(measure.fixed) <= set(params)
    assert not set(measure.fixed) & set(measure.defaults)
    assert measure.sampled == (name in {
        "trace", "avg_l2", "adaptive_avg_l2", "pacbayes", "pacbayes_mag", "rise"
    })  # fmt: skip


def test_a_setting_no_chosen_measure_takes_is_an_error_naming_those_that_do(counted):
    objective, loss = counted
    with pytest.raises(ValueError, match=r"'layer' is not taken by .*\['avg_l2'\].*relative_flat"):
        sharpness(objective, ["avg_l2"], layer="nope")
    with pytest.raises(ValueError, match=r"'eps' is not taken .* keskar, pacbayes_mag$"):
        sharpness(objective, ["worst_l2", "pacbayes"], eps=1e-3)
    with pytest.raises(ValueError, match="'num_samples' is not taken"):
        sharpness(objective, ["worst_l2"], num_samples=5)
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['rh0'\]"):
        sharpness(objective, ["worst_l2"], rh0=0.1)
    with pytest.raises(ValueError, match=r"unknown sharpness measure\(s\) \['sharpest'\]"):
        sharpness(objective, ["sharpest"])
    assert loss.calls == 0
    # None means the default, and seed goes to any selection
    assert sharpness(objective, ["avg_l2"], layer=None, seed=3, num_samples=2)["avg_l2"]
    assert check_settings(["relative_flatness"], {"seed": 0}) == ["relative_flatness"]


@pytest.mark.parametrize(
    ("names", "settings", "error", "match"),
    [
        (["fisher_rao"], {"seed": 1.5}, TypeError, "expected an int seed"),
        (["avg_l2"], {"seed": 1.5}, TypeError, "expected an int seed"),
        (["avg_l2"], {"seed": True}, TypeError, "expected an int seed"),
        (["avg_l2"], {"num_samples": True}, TypeError, "expected an int num_samples"),
        (["avg_l2"], {"num_samples": 2.0}, TypeError, "expected an int num_samples"),
        (["avg_l2"], {"num_samples": 0}, ValueError, "expected an int num_samples >= 1"),
        (["worst_l2"], {"num_restarts": False}, TypeError, "expected an int num_restarts"),
        (["worst_l2"], {"num_steps": -1}, ValueError, "expected an int num_steps >= 1"),
        (["worst_l2"], {"batch_size": True}, TypeError, "expected an int batch_size"),
        (["worst_l2"], {"rho": -0.1}, ValueError, "expected a positive finite rho"),
        (["worst_l2"], {"rho": math.nan}, ValueError, "expected a positive finite rho"),
        (["worst_l2"], {"rho": True}, TypeError, "expected a number for rho"),
        (["worst_l2"], {"rho": "0.1"}, TypeError, "expected a number for rho"),
        (["worst_l2"], {"random_init": 1}, TypeError, "expected True or False for random_init"),
        (["pacbayes"], {"target": 0}, ValueError, "expected a positive finite target"),
        (["pacbayes"], {"criterion": "error"}, ValueError, "expected one of .* for criterion"),
        (["rise"], {"norm": "filters"}, ValueError, "expected one of .* for norm"),
        (["relative_flatness"], {"layer": 3}, TypeError, "expected a str layer, got int 3"),
        (["keskar"], {"subspace_dim": 0}, ValueError, "expected an int subspace_dim >= 1"),
    ],
)
def test_bad_setting_values_raise_before_any_measure_runs(counted, names, settings, error, match):
    objective, loss = counted
    with pytest.raises(error, match=match):
        sharpness(objective, ["lambda_max", *names], **settings)
    assert loss.calls == 0


def test_measure_functions_check_their_own_arguments(counted):
    from landscape.sharpness import measure_average_case, measure_keskar, measure_worst_case

    objective, loss = counted
    with pytest.raises(TypeError, match="expected an int seed"):
        measure_average_case(objective, seed=1.5)
    with pytest.raises(TypeError, match="expected an int num_restarts"):
        measure_keskar(objective, num_restarts=True)
    with pytest.raises(ValueError, match="expected p 2 or math.inf"):
        measure_worst_case(objective, p=1)
    with pytest.raises(TypeError, match="expected a landscape Objective"):
        sharpness(object(), ["avg_l2"])
    assert loss.calls == 0


def test_a_bad_seed_is_a_type_error_for_deterministic_measures_too():
    for names in (["fisher_rao"], ["relative_flatness"], ["fisher_rao", "rise"]):
        with pytest.raises(TypeError, match="expected an int seed, got float 1.5"):
            sharpness(classifier(), names, seed=1.5)


def test_seed_reaches_only_the_measures_that_draw():
    results = sharpness(classifier(), ["fisher_rao", "avg_l2"], seed=4, num_samples=3)
    assert "seed" not in results["fisher_rao"].settings
    assert results["avg_l2"].settings["seed"] == 4


def test_lambda_max_takes_a_warm_start_and_only_lambda_max_does():
    """The Tracker's warm start is a setting of the registry's lambda_max: a run from the
    last eigenvector needs fewer products and finds the same eigenvalue (dense reference)."""
    objective = classifier()
    hessian = dense_hessian(objective.model, objective_data())[0]
    exact = float(torch.linalg.eigvalsh(hessian)[-1])
    start = WarmStart()
    cold = sharpness(objective, ["lambda_max"], warm_start=start, progress=False)["lambda_max"]
    warm = sharpness(objective, ["lambda_max"], warm_start=start, progress=False)["lambda_max"]
    assert not cold.settings["warm_start"] and warm.settings["warm_start"]
    assert warm.extra["num_hvps"] < cold.extra["num_hvps"]
    for result in (cold, warm):
        assert result.value == pytest.approx(exact, rel=1e-8)
    with pytest.raises(TypeError, match="expected a landscape.sharpness.WarmStart"):
        sharpness(objective, ["lambda_max"], warm_start=True)
    with pytest.raises(ValueError, match="'warm_start' is not taken by the chosen measures"):
        sharpness(objective, ["trace"], warm_start=start)
    with pytest.raises(ValueError, match="expected a positive finite tol"):
        sharpness(objective, ["lambda_max"], tol=-1.0)
