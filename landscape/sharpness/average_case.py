"""Average-case sharpness: the mean rise of the loss under Gaussian noise."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .._progress import progress_bar
from .._provenance import provenance
from ..objective import Objective
from ..params import ParamSelection
from . import _checks
from ._evaluation import State, losses_at, mean_loss, selection_setting, weights_of
from ._guards import check_mean_rise
from ._random import normal_draws
from ._recipe_noise import PerturbedCopy, losses_at_states, losses_in_place, noise_direction
from ._stats import mean_and_stderr, mean_interval
from .registry import DEFAULT_RHO, register
from .result import SharpnessResult

__all__ = ["measure_average_case"]


def measure_average_case(
    objective: Objective,
    *,
    adaptive: bool = False,
    rho: float | None = None,
    num_samples: int = 100,
    seed: int = 0,
    params: ParamSelection = None,
    progress: bool = True,
    stored: bool = True,
) -> SharpnessResult:
    """Average-case sharpness ``E_{delta ~ N(0, rho^2 diag(c^2))} L(w + delta) - L(w)``.

    Monte Carlo over ``num_samples`` Gaussian draws ``z``, with ``delta = rho c z`` and
    ``c = |w|`` (adaptive) or 1; each draw is evaluated on the whole data set (as many at
    a time as the objective's ``points_per_pass``).

    Args:
        objective: the loss and data; its model is never changed.
        adaptive: use ``c = |w|``.
        rho: noise scale; default from :data:`DEFAULT_RHO`.
        num_samples: Monte Carlo draws.
        seed: seeds the draws (the same seed gives the same ``z`` at any weights).
        params: perturb only these weights (names, glob patterns, a predicate or
            ``"trainable"``, see :func:`landscape.params.select_names`); the others stay.
        progress: show a tqdm bar of the draws.
        stored: ``False`` makes draw ``i`` from the recipe ``(seed, i, name, chunk)``
            block by block into one perturbed copy (:mod:`._recipe_noise`): no whole draw
            or scale is held beside the weights; other numbers than the stored draws of
            the same seed, evaluated one at a time. Recorded as ``settings["stored"]``
            when ``False``. A sharded model (FSDP2, tensor parallel) takes it for
            ``avg_l2``: each rank makes its pieces of each draw, written into its own
            shards (call on every rank); ``adaptive_avg_l2`` there is refused.

    Returns:
        A :class:`SharpnessResult` named ``"avg_l2"`` or ``"adaptive_avg_l2"`` with the
        standard error over draws, the 95% interval (skewness-corrected, see
        :func:`~landscape.sharpness._stats.mean_interval`) and the per-draw rises as
        ``samples``. A :class:`~landscape.sharpness.NotAMinimumWarning` is issued when the
        mean rise is below zero by more than two standard errors.

    Raises:
        ValueError: a non-positive ``rho`` or ``num_samples``.
        TypeError: a count or seed that is not an integer.

    Example:
        >>> from landscape.sharpness._example import example_objective
        >>> measure_average_case(example_objective(), num_samples=4).name
        'avg_l2'
    """
    _checks.check_objective(objective, sharded=stored is False)  # recipes: made on shards
    adaptive = _checks.check_flag("adaptive", adaptive)
    if adaptive and objective.sharded:
        raise ValueError(
            f"expected avg_l2 (a scale of rho) for a model sharded by {objective.sharded}, got "
            "adaptive_avg_l2 (its scale rho |w| is not written into the shards yet)"
        )
    name = "adaptive_avg_l2" if adaptive else "avg_l2"
    rho = _checks.check_positive("rho", DEFAULT_RHO[name] if rho is None else rho)
    num_samples = _checks.check_count("num_samples", num_samples)
    seed = _checks.check_seed(seed)
    stored = _checks.check_flag("stored", stored)
    weights = weights_of(objective, params)
    base = mean_loss(objective, weights)
    with progress_bar(progress, desc=name, unit="sample", total=num_samples) as bar:
        draws = (weights, rho, adaptive, seed, num_samples)
        if stored:
            losses = losses_at(objective, weights, _deltas(*draws), callback=bar.update)
        elif objective.sharded:  # each draw written into the model's shards
            noise = (noise_direction(weights, seed, i) for i in range(num_samples))
            losses = losses_in_place(objective, noise, rho, callback=bar.update)
        else:
            losses = losses_at_states(objective, _recipe_states(*draws), callback=bar.update)
        samples = losses - base
    value, stderr = mean_and_stderr(samples)
    check_mean_rise(name, value, stderr)
    settings = {
        **provenance(objective),
        **selection_setting(objective, params, weights),
        "rho": rho,
        "num_samples": num_samples,
        "seed": seed,
        **({} if stored else {"stored": False}),
    }
    return SharpnessResult(
        name, value, stderr, settings, {"loss": base}, samples, mean_interval(samples)
    )


def _deltas(
    weights: State, rho: float, adaptive: bool, seed: int, num_samples: int
) -> Iterator[State]:
    scales = {n: rho * (w.abs() if adaptive else torch.ones_like(w)) for n, w in weights.items()}
    for z in normal_draws(weights, seed, num_samples):
        yield {n: scales[n] * t for n, t in z.items()}


def _recipe_states(
    weights: State, rho: float, adaptive: bool, seed: int, num_samples: int
) -> Iterator[State]:
    copy = PerturbedCopy(weights)
    for i in range(num_samples):
        z = noise_direction(weights, seed, i)
        yield copy.write(z, (lambda w: rho * w.abs()) if adaptive else (lambda w: rho))


for _adaptive in (False, True):
    register(
        "adaptive_avg_l2" if _adaptive else "avg_l2",
        measure_average_case,
        fixed={"adaptive": _adaptive},
        defaults={"rho": None, "num_samples": 100, "seed": 0, "params": None, "stored": True},
        sampled=True,
    )
