"""Sharpness noise made from recipes (``stored=False``): avg_l2, adaptive_avg_l2, pacbayes,
pacbayes_mag and rise draw each sample again from ``(seed, sample, name, chunk)`` into one
perturbed copy. Their values are other numbers than the stored draws', so they are checked
against closed forms (float64) and against the recipe values themselves."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _live_vectors import LiveVectors
from _sharpness_cases import DTYPE, closure_quadratic, linear_quadratic, spd
from torch import nn
from torch.utils._pytree import tree_leaves

from landscape.directions import random_directions, recipes
from landscape.objective import Objective
from landscape.sharpness import (
    measure_average_case,
    measure_pacbayes,
    measure_rise,
    measure_worst_case,
    sharpness,
)
from landscape.sharpness._recipe_noise import noise_direction

H_EIGS = [4.0, 2.0, 1.0, 0.5, 0.25, 0.1]


@pytest.fixture
def quad() -> tuple[Objective, torch.Tensor, torch.Tensor]:
    h = spd(H_EIGS)
    c = torch.linspace(-1, 1, len(H_EIGS), dtype=DTYPE)
    return closure_quadratic(h, c), h, c


def test_avg_l2_from_recipes_matches_half_trace(quad):
    objective, h, c = quad
    rho = 0.1
    result = measure_average_case(objective, rho=rho, num_samples=400, seed=1, stored=False)
    exact = rho**2 * float(torch.trace(h)) / 2
    assert abs(result.value - exact) <= 4 * result.stderr
    assert result.interval[0] < exact < result.interval[1]
    # each sample is the exact rise 1/2 delta^T H delta of its recipe draw (seed, i)
    for i in (0, 7):
        z = rho * noise_direction({"w": c}, 1, i)["w"]
        assert result.samples[i] == pytest.approx(float(0.5 * z @ h @ z), rel=1e-10)
    # ... and not the stored draw of the same seed
    stored = measure_average_case(objective, rho=rho, num_samples=3, seed=1, progress=False)
    assert stored.samples[0] != pytest.approx(result.samples[0], rel=1e-6)


def test_adaptive_avg_l2_from_recipes_matches_its_closed_form(quad):
    objective, h, c = quad
    rho = 0.1
    result = measure_average_case(
        objective, adaptive=True, rho=rho, num_samples=400, seed=2, stored=False
    )
    # E 1/2 (rho c z)^T H (rho c z) = rho^2 / 2 sum_i H_ii c_i^2
    exact = rho**2 * float((torch.diag(h) * c**2).sum()) / 2
    assert result.name == "adaptive_avg_l2"
    assert abs(result.value - exact) <= 4 * result.stderr
    z = rho * c.abs() * noise_direction({"w": c}, 2, 0)["w"]
    assert result.samples[0] == pytest.approx(float(0.5 * z @ h @ z), rel=1e-10)


@pytest.mark.parametrize("magnitude_aware", [False, True])
def test_pacbayes_from_recipes_finds_the_closed_form_sigma(quad, magnitude_aware):
    objective, h, c = quad
    target, eps = 0.01, 1e-3
    result = measure_pacbayes(
        objective, magnitude_aware=magnitude_aware, target=target, seed=2, stored=False
    )
    sigma = result.extra["sigma"]
    if magnitude_aware:  # E rise = 1/2 sum_i H_ii (sigma^2 c_i^2 + eps^2) = target
        diag = torch.diag(h)
        exact = math.sqrt((2 * target - eps**2 * float(diag.sum())) / float((diag * c**2).sum()))
    else:
        exact = math.sqrt(2 * target / float(torch.trace(h)))
    assert abs(sigma - exact) <= 4 * result.extra["sigma_stderr"] + 2e-3 * exact
    assert result.samples.mean() <= target
    # at sigma, each sample is the exact rise of the recipe draw i scaled by sigma
    z = noise_direction({"w": c}, 2, 3)["w"]
    scale = torch.sqrt(sigma**2 * c**2 + eps**2) if magnitude_aware else sigma
    delta = scale * z
    assert result.samples[3] == pytest.approx(float(0.5 * delta @ h @ delta), rel=1e-9)


def test_rise_from_recipes_is_the_surface_recipe_direction_of_seed_plus_i():
    problem = linear_quadratic(6, seed=3, away=0.0)
    rho = 0.2
    result = measure_rise(problem.objective, rho=rho, num_samples=4, seed=5, stored=False)
    model = problem.objective.model
    for i in range(4):
        d = random_directions(model, num_directions=1, seed=5 + i, stored=False).x["weight"]
        exact = problem.rises(rho * d.reshape(1, -1).numpy())[0]
        assert result.samples[i] == pytest.approx(exact, rel=1e-10, abs=1e-14)
    assert result.settings["stored"] is False


def test_recipe_noise_is_deterministic_and_depends_on_the_seed():
    problem = linear_quadratic(6, seed=4, away=0.0)
    runs = [
        measure_average_case(problem.objective, num_samples=5, seed=s, stored=False)
        for s in (0, 0, 1)
    ]
    assert np.array_equal(runs[0].samples, runs[1].samples)
    assert runs[0].value == runs[1].value
    assert not np.array_equal(runs[0].samples, runs[2].samples)
    a, b = (measure_rise(problem.objective, num_samples=3, stored=False) for _ in range(2))
    assert np.array_equal(a.samples, b.samples)


def test_recipe_noise_leaves_the_model_unchanged():
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2)).to(DTYPE).train()
    before = {n: t.clone() for n, t in model.state_dict().items()}
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0), dtype=DTYPE)
    objective = Objective(model, (x, x[:, :2]), loss="mse")
    sharpness(objective, ["avg_l2", "pacbayes_mag", "rise"], num_samples=3, stored=False)
    assert model.training
    after = model.state_dict()
    assert all(torch.equal(before[n], after[n]) for n in before)


def test_settings_record_stored_false_and_sharpness_routes_it():
    objective = linear_quadratic(4, seed=5, away=0.0).objective
    names = ["avg_l2", "adaptive_avg_l2", "pacbayes", "pacbayes_mag", "rise", "fisher_rao"]
    results = sharpness(objective, names, num_samples=3, stored=False, progress=False)
    for name in names[:-1]:
        assert results[name].settings["stored"] is False, name
    assert "stored" not in results["fisher_rao"].settings
    # the default (stored draws) keeps the settings it always had
    default = measure_average_case(objective, num_samples=3, progress=False)
    assert "stored" not in default.settings


def test_bad_stored_values_are_refused(quad):
    objective, _, _ = quad
    with pytest.raises(TypeError, match="expected True or False for stored, got str"):
        measure_average_case(objective, stored="no")
    with pytest.raises(TypeError, match="expected True or False for stored"):
        measure_pacbayes(objective, stored=np.float64(1.0))
    with pytest.raises(TypeError, match="stored"):
        measure_rise(objective, stored=0)
    with pytest.raises(TypeError, match="stored"):
        sharpness(objective, ["pacbayes"], stored=1)
    with pytest.raises(ValueError, match="setting 'stored' is not taken by"):
        sharpness(objective, ["worst_l2"], stored=False)
    with pytest.raises(TypeError):
        measure_worst_case(objective, stored=False)


class NewVectors(LiveVectors):
    """:class:`LiveVectors` that does not count views of an operation's inputs (the
    weights' transpose in a forward, their bytes hashed): new storages only."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        inputs = tree_leaves((args, kwargs or {}))
        held = {id(t.untyped_storage()) for t in inputs if isinstance(t, torch.Tensor)}
        for key in held - set(self.live):  # storages made before: never counted
            self.live[key] = (False, 0.0, 0)
        return super().__torch_dispatch__(func, types, args, kwargs)


def test_recipe_noise_holds_one_perturbed_copy_not_a_whole_draw(monkeypatch):
    """Peak number of weight-sized tensors alive during the measure: the copy and pieces
    of a chunk and a block with recipes, several whole tensors with stored draws."""
    monkeypatch.setattr(recipes, "BLOCK", 2**12)
    n = 4 * recipes.CHUNK
    model = nn.Linear(512, n // 512, bias=False).to(DTYPE)
    x = torch.randn(2, 512, generator=torch.Generator().manual_seed(0), dtype=DTYPE)
    objective = Objective(model, (x, torch.zeros(2, n // 512, dtype=DTYPE)), loss="mse")
    peaks = {}
    for stored in (True, False):
        with NewVectors(n, least=2**10) as live:
            measure_average_case(
                objective, adaptive=True, num_samples=3, stored=stored, progress=False
            )
        peaks[stored] = live.peak[True]
    assert peaks[False] <= 1.5, peaks
    assert peaks[True] >= 2.5, peaks
