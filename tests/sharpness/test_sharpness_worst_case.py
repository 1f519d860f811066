"""Worst-case measures against exact maxima of convex quadratics (issue 8, item 3).

A convex function's maximum over a box is at one of its ``2^d`` vertices, so for 12
weights the exact ``keskar`` and ``worst_linf`` values are found by enumeration; the
``worst_l2`` maximum over a ball solves the trust-region secular equation. Local searches
stop at local maxima (many vertices are), so every value must be a lower bound, and with
the default restarts within 2% of the maximum. For ``worst_linf`` that holds over ten seeds
only with the single flips that end each restart (issue 26, item 6).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _sharpness_cases import ball_maximum, box_maximum, linear_quadratic

from landscape.sharpness import keskar_subspace, measure_keskar, measure_worst_case

DIM = 12
# (problem seed, distance of the weights from the minimum): away from the minimum, where
# version 0.1's single search ended 2-26% below the maximum
PROBLEMS = [(0, 0.1), (1, 0.1), (2, 0.1), (3, 0.1), (1, 0.2)]
# and at the minimum (the weights at c), where a box has several local maxima (max-cut-like):
# version 0.2's restarts ended up to 8% below the maximum (problem 6, seed 3) and 2.1% below it
# away from it (problem (1, 0.2), seeds 3-6)
LINF_PROBLEMS = [*PROBLEMS, (6, 0.0), (7, 0.0), (8, 0.0)]


def gap(found: float, exact: float) -> float:
    return 1 - found / exact


@pytest.mark.parametrize(("problem_seed", "away"), LINF_PROBLEMS)
def test_worst_linf_within_two_percent_of_the_box_maximum(problem_seed, away):
    problem = linear_quadratic(DIM, problem_seed, away)
    rho = 0.05
    exact = box_maximum(problem, np.full(DIM, rho))
    for seed in range(10):
        result = measure_worst_case(problem.objective, p=math.inf, rho=rho, seed=seed)
        assert result.value <= exact * (1 + 1e-9)  # a lower bound
        assert gap(result.value, exact) < 0.02, (seed, gap(result.value, exact))
        assert result.settings["num_restarts"] == 20 and result.settings["num_flips"] == 4
        assert 1 <= result.extra["num_agreed"] <= 20


def test_worst_linf_flips_are_what_reaches_the_maximum():
    """Without the flips the restarts stop at corners that one flip improves."""
    problem = linear_quadratic(DIM, 6, 0.0)
    rho = 0.05
    exact = box_maximum(problem, np.full(DIM, rho))
    kwargs = {"p": math.inf, "rho": rho, "seed": 3, "progress": False}
    without = measure_worst_case(problem.objective, num_flips=0, **kwargs)
    assert gap(without.value, exact) > 0.05  # version 0.2: 8% below
    assert without.settings["num_flips"] == 0
    with_flips = measure_worst_case(problem.objective, **kwargs)
    assert gap(with_flips.value, exact) < 0.02


def test_num_flips_is_for_the_box_only():
    problem = linear_quadratic(DIM, 0, 0.1)
    assert measure_worst_case(problem.objective, progress=False).settings["num_flips"] == 0
    with pytest.raises(ValueError, match="expected num_flips 0 for p = 2"):
        measure_worst_case(problem.objective, num_flips=2)
    with pytest.raises(TypeError, match="expected an int num_flips, got float"):
        measure_worst_case(problem.objective, p=math.inf, num_flips=1.5)
    with pytest.raises(ValueError, match="expected an int num_flips >= 1, got -1"):
        measure_worst_case(problem.objective, p=math.inf, num_flips=-1)


def test_adaptive_worst_linf_within_two_percent_of_its_box_maximum():
    problem = linear_quadratic(DIM, 4, 0.1)
    rho = 0.05
    exact = box_maximum(problem, rho * np.abs(problem.weights))
    for seed in range(10):
        result = measure_worst_case(
            problem.objective, p=math.inf, adaptive=True, rho=rho, seed=seed, progress=False
        )
        assert result.name == "adaptive_worst_linf"
        assert result.value <= exact * (1 + 1e-9)
        assert gap(result.value, exact) < 0.02


@pytest.mark.parametrize(("problem_seed", "away"), PROBLEMS)
def test_keskar_within_two_percent_of_the_box_maximum(problem_seed, away):
    problem = linear_quadratic(DIM, problem_seed, away)
    eps = 1e-2
    exact = box_maximum(problem, eps * (np.abs(problem.weights) + 1))
    for seed in (0, 1):
        result = measure_keskar(problem.objective, eps=eps, seed=seed)
        rise = result.extra["max_loss"] - result.extra["loss"]
        assert rise <= exact * (1 + 1e-9)
        assert gap(rise, exact) < 0.02, (seed, gap(rise, exact))
        assert result.value == pytest.approx(100 * rise / (1 + problem.loss), rel=1e-12)
        assert result.settings["num_restarts"] == 20 and result.extra["num_agreed"] >= 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_keskar_in_a_subspace_within_two_percent_of_its_box_maximum(seed):
    """In a subspace the box is over ``z``: ``|z_i| <= eps (|(A^+ w)_i| + 1)``, the loss
    ``L(w + A z)``; the exact maximum enumerates the vertices in ``z``."""
    problem = linear_quadratic(DIM, 5, 0.1)
    eps, dim = 1e-2, 8
    matrix = keskar_subspace(DIM, dim, seed=seed).numpy()
    bounds = eps * (np.abs(np.linalg.pinv(matrix) @ problem.weights) + 1)
    signs = np.array(np.meshgrid(*[[-1.0, 1.0]] * dim)).reshape(dim, -1).T
    exact = problem.rises(signs * bounds @ matrix.T).max()
    result = measure_keskar(problem.objective, eps=eps, subspace_dim=dim, seed=seed)
    rise = result.extra["max_loss"] - result.extra["loss"]
    assert result.settings["subspace_dim"] == dim
    assert rise <= exact * (1 + 1e-9)
    assert gap(rise, exact) < 0.02, gap(rise, exact)
    # and the full-space search of the same problem reaches its own (other) box maximum
    full = measure_keskar(problem.objective, eps=eps, seed=seed)
    full_exact = box_maximum(problem, eps * (np.abs(problem.weights) + 1))
    assert gap(full.extra["max_loss"] - full.extra["loss"], full_exact) < 0.02


@pytest.mark.parametrize(("problem_seed", "away"), [(0, 0.0), (1, 0.1), (2, 1.0)])
def test_worst_l2_reaches_the_trust_region_maximum(problem_seed, away):
    problem = linear_quadratic(DIM, problem_seed, away)
    rho = 0.1
    exact = ball_maximum(problem, rho)
    result = measure_worst_case(problem.objective, rho=rho, seed=problem_seed)
    assert result.value <= exact * (1 + 1e-9)
    assert gap(result.value, exact) < 0.01
    assert result.settings["num_restarts"] == 3


def test_ascent_steps_are_num_ascent_steps_and_num_steps_still_works():
    """``num_steps`` means optimizer steps only; 0.2's ascent-step count is accepted with a
    DeprecationWarning, directly and through the registry, and gives the same value."""
    from landscape.sharpness import sharpness

    problem = linear_quadratic(4, 0, 0.0)
    kwargs = {"rho": 0.05, "num_restarts": 1, "progress": False}
    new = measure_worst_case(problem.objective, num_ascent_steps=3, **kwargs)
    assert new.settings["num_ascent_steps"] == 3 and "num_steps" not in new.settings
    with pytest.warns(DeprecationWarning, match="num_steps= is renamed num_ascent_steps="):
        old = measure_worst_case(problem.objective, num_steps=3, **kwargs)
    assert old.value == new.value
    with pytest.warns(DeprecationWarning, match="num_steps= is renamed"):
        routed = sharpness(problem.objective, ["worst_l2"], num_steps=3, num_restarts=1,
                           rho=0.05, progress=False)  # fmt: skip
    assert routed["worst_l2"].value == new.value
    with pytest.raises(TypeError, match="expected num_ascent_steps= or its old name"):
        measure_worst_case(problem.objective, num_steps=3, num_ascent_steps=4, **kwargs)
    with pytest.raises(ValueError, match="expected p 2 or math.inf, got 3"):
        measure_worst_case(problem.objective, p=3)
