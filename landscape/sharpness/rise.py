"""Rise of the loss along normalized random directions (what a surface plot shows)."""

from __future__ import annotations

from collections.abc import Iterator

from .. import checks, options
from .._progress import progress_bar
from .._provenance import provenance
from ..directions import random_direction
from ..directions.recipes import RecipeDirection
from ..objective import Objective
from ..options import IgnoreName, NormName
from ..params import ParamSelection
from . import _checks
from ._evaluation import State, losses_at, mean_loss, selection_setting, weights_of
from ._guards import check_mean_rise
from ._recipe_noise import PerturbedCopy, losses_at_states, losses_in_place
from ._stats import mean_and_stderr, mean_interval
from .registry import DEFAULT_RHO, register
from .result import SharpnessResult

__all__ = ["measure_rise"]


def measure_rise(
    objective: Objective,
    *,
    rho: float | None = None,
    num_samples: int = 30,
    norm: NormName = "filter",
    ignore: IgnoreName = "biasbn",
    seed: int = 0,
    params: ParamSelection = None,
    progress: bool = True,
    stored: bool = True,
) -> SharpnessResult:
    """Rise of the loss at distance ``rho`` along normalized random directions.

    ``L(w + rho d_i) - L(w)`` for ``d_i = random_direction(weights, seed=seed + i)``
    (Li et al. 2018 normalization), ``i < num_samples``: what a surface plot shows at ``rho``.

    Args:
        objective: the loss and data; its model is never changed.
        rho: distance in normalized units; default from :data:`DEFAULT_RHO`.
        num_samples: number of directions.
        norm: direction normalization (see :func:`landscape.directions.random_direction`).
        ignore: ``"biasbn"`` leaves 1-D tensors unperturbed.
        seed: direction ``i`` uses ``seed + i``.
        params: perturb only these weights (names, glob patterns, a predicate or
            ``"trainable"``, see :func:`landscape.params.select_names`); the others stay.
        progress: show a tqdm bar of the directions.
        stored: ``False`` makes direction ``i`` the recipe of ``seed + i``
            (``random_directions(..., seed=seed + i, stored=False).x``), written block by
            block into one perturbed copy: no whole direction is held beside the weights;
            other numbers than the stored directions. Recorded when ``False``. A sharded
            model (FSDP2, tensor parallel) takes it: each rank makes its pieces of each
            direction, written into its own shards (call on every rank).

    Returns:
        A :class:`SharpnessResult` named ``"rise"``: mean over directions, its standard error
        and 95% interval, the per-direction rises as ``samples``. A
        :class:`~landscape.sharpness.NotAMinimumWarning` is issued when the mean rise is
        below zero by more than two standard errors.

    Raises:
        ValueError: a non-positive ``rho`` or ``num_samples``, or a bad ``norm``/``ignore``.
        TypeError: a count or seed that is not an integer.

    Example:
        >>> from landscape.sharpness._example import example_objective
        >>> measure_rise(example_objective(), num_samples=2).samples.shape
        (2,)
    """
    _checks.check_objective(objective, sharded=stored is False)  # recipes: made on shards
    rho = _checks.check_positive("rho", DEFAULT_RHO["rise"] if rho is None else rho)
    num_samples = _checks.check_count("num_samples", num_samples)
    norm = checks.check_choice(norm, options.Norm, "norm")
    ignore = checks.check_choice(ignore, options.Ignore, "ignore")
    seed = _checks.check_seed(seed)
    stored = _checks.check_flag("stored", stored)
    weights = weights_of(objective, params)

    def deltas() -> Iterator[State]:
        for i in range(num_samples):
            d = random_direction(weights, norm=norm, ignore=ignore, seed=seed + i)
            yield {n: rho * t for n, t in d.items()}

    def recipe_states() -> Iterator[State]:
        copy = PerturbedCopy(weights)
        for i in range(num_samples):
            d = RecipeDirection(weights, seed=seed + i, axis=0, norm=norm, ignore=ignore)
            yield copy.write(d, lambda w: rho)

    base = mean_loss(objective, weights)
    with progress_bar(progress, desc="rise", unit="sample", total=num_samples) as bar:
        if stored:
            losses = losses_at(objective, weights, deltas(), callback=bar.update)
        elif objective.sharded:  # written into the model's shards
            recipes = (RecipeDirection(weights, seed=seed + i, axis=0, norm=norm, ignore=ignore)
                       for i in range(num_samples))  # fmt: skip
            losses = losses_in_place(objective, recipes, rho, callback=bar.update)
        else:
            losses = losses_at_states(objective, recipe_states(), callback=bar.update)
        samples = losses - base
    value, stderr = mean_and_stderr(samples)
    check_mean_rise("rise", value, stderr)
    settings = {
        **provenance(objective),
        **selection_setting(objective, params, weights),
        "rho": rho,
        "num_samples": num_samples,
        "norm": norm,
        "ignore": ignore,
        "seed": seed,
        **({} if stored else {"stored": False}),
    }
    return SharpnessResult(
        "rise", value, stderr, settings, {"loss": base}, samples, mean_interval(samples)
    )


register(
    "rise",
    measure_rise,
    defaults={
        "rho": None,
        "num_samples": 30,
        "norm": "filter",
        "ignore": "biasbn",
        "seed": 0,
        "params": None,
        "stored": True,
    },
    sampled=True,
)
