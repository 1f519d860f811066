"""PAC-Bayes flatness (Jiang et al. 2020): the largest noise the loss tolerates."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import scipy.optimize
import torch

from .. import checks
from .._progress import progress_bar
from .._provenance import provenance
from ..objective import Objective
from ..params import ParamSelection
from . import _checks
from ._evaluation import State, losses_at, mean_loss, selection_setting, weights_of
from ._random import normal_draws
from ._recipe_noise import (
    PerturbedCopy,
    Scale,
    losses_at_states,
    losses_in_place,
    noise_direction,
)
from ._stats import mean_and_stderr, mean_interval
from .registry import register
from .result import SharpnessResult

Criterion = Literal["loss", "accuracy"]
_CRITERIA: tuple[Criterion, ...] = ("loss", "accuracy")

__all__ = ["measure_pacbayes"]

Point = tuple[float, np.ndarray]  # (sigma, the per-draw rises at sigma)


def measure_pacbayes(
    objective: Objective,
    *,
    magnitude_aware: bool = False,
    target: float = 0.1,
    criterion: Criterion = "loss",
    eps: float = 1e-3,
    num_samples: int = 100,
    rtol: float = 1e-3,
    seed: int = 0,
    params: ParamSelection = None,
    progress: bool = True,
    stored: bool = True,
) -> SharpnessResult:
    """PAC-Bayes flatness (Jiang et al. 2020): ``1 / sigma^2`` for the largest tolerable ``sigma``.

    ``sigma`` is the noise level at which Gaussian noise of std ``sigma``
    (``magnitude_aware=False``) or ``sqrt(sigma^2 w_i^2 + eps^2)`` (``True``) raises the mean
    loss by ``target`` on average (or lowers the accuracy by ``target``), estimated with
    ``num_samples`` draws. The same draws ``z`` serve every ``sigma`` (common random
    numbers), so the estimated rise is a smooth function of ``sigma``: it is bracketed from
    ``sigma = 1`` by steps to where a rise growing like ``sigma^2`` would reach the target,
    then the bracket is narrowed to a relative width ``rtol`` by
    secant steps in ``sigma^2`` (the rise grows like ``sigma^2``), each followed by a point
    just across the root. The reported ``sigma`` is the lower end (its estimate is within the
    target). If even ``sigma = 0`` exceeds the target (the ``eps`` floor alone does),
    ``sigma`` is 0 and the value inf.

    Error bars: ``stderr`` is the delta-method standard error, ``2 / (sigma^3 s)`` times the
    standard error of the mean rise at ``sigma`` (``s`` the slope of the estimated rise in
    ``sigma``, from the final bracket). ``interval`` inverts the 95% interval of the mean
    rise (skewness corrected, see :func:`~landscape.sharpness._stats.mean_interval`): it
    holds the ``1 / sigma^2`` at which the target is inside that interval, found with two
    more noise levels, so it covers as that interval does even where ``1 / sigma^2`` is far
    from linear in the mean rise.

    Args:
        objective: the loss and data; its model is never changed.
        magnitude_aware: the ``pacbayes_mag`` variant.
        target: tolerated rise of the loss (or drop of the accuracy).
        criterion: ``"loss"`` or ``"accuracy"`` (needs an objective with accuracy).
        eps: noise floor of the magnitude-aware variant.
        num_samples: Monte Carlo draws per noise level.
        rtol: relative width of the final bracket.
        seed: seeds the draws.
        params: perturb only these weights (names, glob patterns, a predicate or
            ``"trainable"``, see :func:`landscape.params.select_names`); the others stay.
        progress: show a tqdm bar of the noise levels (how many a search needs is not known
            in advance, so it shows a count and a rate, no ETA).
        stored: ``False`` makes draw ``i`` from the recipe ``(seed, i, name, chunk)``
            block by block into one perturbed copy, again at each noise level (see
            :func:`~landscape.sharpness.measure_average_case`); recorded when ``False``.
            A sharded model takes it for ``pacbayes`` (each draw written into the ranks'
            shards; call on every rank); ``pacbayes_mag`` there is refused.

    Returns:
        A :class:`SharpnessResult` named ``"pacbayes"`` or ``"pacbayes_mag"`` with value
        ``1 / sigma^2``, its standard error and interval, ``extra`` ``sigma``,
        ``sigma_stderr``, ``num_levels`` (noise levels evaluated) and the unperturbed
        ``loss`` (or ``accuracy``), and the per-draw rises (or drops) at ``sigma`` as
        ``samples``.

    Raises:
        ValueError: a non-positive setting, an unknown criterion, or accuracy requested from
            an objective without it.
        TypeError: a count, flag or seed of the wrong type.
        RuntimeError: the estimate stays within the target for every ``sigma`` up to 2**40.

    Example:
        >>> from landscape.sharpness._example import example_objective
        >>> result = measure_pacbayes(example_objective(), num_samples=4)
        >>> result.extra["sigma"] > 0
        True
    """
    _checks.check_objective(objective, sharded=stored is False)  # recipes: made on shards
    magnitude_aware = _checks.check_flag("magnitude_aware", magnitude_aware)
    name = "pacbayes_mag" if magnitude_aware else "pacbayes"
    if magnitude_aware and objective.sharded:
        raise ValueError(
            f"expected pacbayes (a noise scale sigma) for a model sharded by "
            f"{objective.sharded}, got pacbayes_mag (its scale is not written into the "
            "shards yet)"
        )
    target = _checks.check_positive("target", target)
    eps = _checks.check_positive("eps", eps)
    rtol = _checks.check_positive("rtol", rtol)
    num_samples = _checks.check_count("num_samples", num_samples)
    seed = _checks.check_seed(seed)
    stored = _checks.check_flag("stored", stored)
    criterion = checks.check_choice(criterion, _CRITERIA, "criterion")
    if criterion == "accuracy" and "accuracy" not in objective.names:
        raise ValueError(
            "expected an objective with accuracy for criterion='accuracy', got one with "
            f"{objective.names}"
        )
    weights = weights_of(objective, params)
    sign = 1.0 if criterion == "loss" else -1.0  # a rise of the loss, a drop of the accuracy
    base = mean_loss(objective, weights, metric=criterion)
    levels = 0
    bar = progress_bar(progress, desc=name, unit="level")

    def scale(sigma: float) -> Scale:
        if magnitude_aware:
            return lambda w: torch.sqrt(sigma**2 * w**2 + eps**2)
        return lambda w: sigma

    def recipe_states(sigma: float) -> Iterator[State]:
        copy = PerturbedCopy(weights)
        for i in range(num_samples):
            yield copy.write(noise_direction(weights, seed, i), scale(sigma))

    def rises(sigma: float) -> np.ndarray:
        nonlocal levels
        levels += 1
        bar.update()
        if not stored and objective.sharded:  # each draw written into the model's shards
            noise = (noise_direction(weights, seed, i) for i in range(num_samples))
            return sign * (losses_in_place(objective, noise, sigma, criterion) - base)
        if not stored:
            return sign * (losses_at_states(objective, recipe_states(sigma), criterion) - base)

        def deltas() -> Iterator[State]:
            for z in normal_draws(weights, seed, num_samples):
                if magnitude_aware:
                    yield {
                        n: torch.sqrt(sigma**2 * weights[n] ** 2 + eps**2) * t for n, t in z.items()
                    }
                else:
                    yield {n: sigma * t for n, t in z.items()}

        return sign * (losses_at(objective, weights, deltas(), criterion) - base)

    settings = {
        **provenance(objective),
        **selection_setting(objective, params, weights),
        "target": target,
        "criterion": criterion,
        "num_samples": num_samples,
        "rtol": rtol,
        "seed": seed,
        **({} if stored else {"stored": False}),
    }
    if magnitude_aware:
        settings["eps"] = eps
    with bar:
        lo, hi = _bracket(rises, target, magnitude_aware)
        if lo[0] == 0:
            extra = {"sigma": 0.0, "sigma_stderr": math.nan, criterion: base, "num_levels": levels}
            return SharpnessResult(name, math.inf, math.nan, settings, extra, lo[1])
        lo, hi = _narrow(rises, target, lo, hi, rtol)
        sigma, samples = lo
        mean, stderr = mean_and_stderr(samples)
        slope = (hi[1].mean() - mean) / (hi[0] - sigma)
        ends = None
        if slope > 0 and math.isfinite(slope) and math.isfinite(stderr):
            ends = _inverted_interval(rises, target, sigma, samples, slope)
    value = sigma**-2
    if ends is not None:
        interval = (ends[1] ** -2, ends[0] ** -2)
        sigma_stderr = stderr / slope
        value_stderr = 2 * sigma**-3 * sigma_stderr  # delta method
    else:
        interval, sigma_stderr, value_stderr = (math.nan, math.nan), math.nan, math.nan
    extra = {
        "sigma": sigma,
        "sigma_stderr": sigma_stderr,
        criterion: base,
        "num_levels": float(levels),
    }
    return SharpnessResult(name, value, value_stderr, settings, extra, samples, interval)


def _within(point: Point, target: float) -> bool:
    return bool(point[1].mean() <= target)  # NaN (a diverged loss) counts as above


def _bracket(
    rises: Callable[[float], np.ndarray], target: float, check_zero: bool
) -> tuple[Point, Point]:
    """Points ``lo`` within the target and ``hi`` above it (or ``lo = 0`` when even
    ``sigma = 0``, or every ``sigma`` down to 2**-60, is above the target).

    From ``sigma = 1``, each next level is where the rise would reach the target if it
    grew like ``sigma^2`` (overshot by 5% so as to land across the target, at most 16
    times farther), or twice or half as far when the rise says nothing (not positive, not
    finite)."""
    if check_zero:
        zero = (0.0, rises(0.0))
        if not _within(zero, target):
            return zero, zero
    lo: Point | None = None
    hi: Point | None = None
    sigma = 1.0
    while lo is None or hi is None:
        point = (sigma, rises(sigma))
        mean = float(point[1].mean())
        if _within(point, target):
            lo = point
            if hi is None:
                if sigma > 2.0**40:
                    raise RuntimeError(
                        f"the estimate stays within target={target} up to sigma={sigma:g}; the "
                        "loss does not respond to noise: check the objective, or use a smaller "
                        "target"
                    )
                factor = 1.05 * math.sqrt(target / mean) if mean > 0 else 2.0
                sigma *= min(max(factor, 1.25), 16.0)
        else:
            hi = point
            if lo is None:
                if sigma < 2.0**-60:
                    return (0.0, point[1]), point
                finite = math.isfinite(mean) and mean > 0
                factor = 0.95 * math.sqrt(target / mean) if finite else 0.5
                sigma *= max(min(factor, 0.8), 1 / 16)
    return lo, hi


def _narrow(
    rises: Callable[[float], np.ndarray], target: float, lo: Point, hi: Point, rtol: float
) -> tuple[Point, Point]:
    """The bracket narrowed to ``hi - lo <= rtol * hi`` by Brent's method on the estimated
    rise as a function of ``sigma^2`` (nearly linear there); its last steps land on both
    sides of the root, so both ends close in. Bisection finishes if they do not."""
    points = [lo, hi]
    known = {lo[0] ** 2: float(lo[1].mean()) - target, hi[0] ** 2: float(hi[1].mean()) - target}

    def excess(squared: float) -> float:
        if squared in known:  # the ends, which Brent's method asks for first
            value = known[squared]
        else:
            point = (math.sqrt(squared), rises(math.sqrt(squared)))
            points.append(point)
            value = float(point[1].mean()) - target
        return value if math.isfinite(value) else math.inf

    if hi[0] - lo[0] > rtol * hi[0] and excess(lo[0] ** 2) < 0:  # else lo is the root
        scipy.optimize.brentq(
            excess, lo[0] ** 2, hi[0] ** 2, xtol=rtol * lo[0] ** 2, rtol=1e-15, maxiter=100
        )
        lo = max((p for p in points if _within(p, target)), key=lambda p: p[0])
        hi = min((p for p in points if not _within(p, target)), key=lambda p: p[0])
    while hi[0] - lo[0] > rtol * hi[0]:
        mid = (lo[0] + hi[0]) / 2
        point = (mid, rises(mid))
        lo, hi = (point, hi) if _within(point, target) else (lo, point)
    return lo, hi


def _inverted_interval(
    rises: Callable[[float], np.ndarray],
    target: float,
    sigma: float,
    samples: np.ndarray,
    slope: float,
) -> tuple[float, float]:
    """The noise levels ``sigma`` at which the target is inside the 95% interval of the mean
    rise (test inversion, so the interval covers as that one does): ``s_low`` where its
    upper end meets the target and ``s_high`` where its lower end does. Each is found by one
    secant step in ``sigma^2`` from the reported ``sigma`` to one more level, placed where
    the linearized rise puts it."""
    mean = float(samples.mean())
    low, high = mean_interval(samples)
    ends = []
    for bound, shift in ((1, high - mean), (0, low - mean)):
        guess = sigma - shift / slope
        guess = guess if guess > 0 else sigma / 4
        at_guess = mean_interval(rises(guess))[bound]
        at_sigma = (low, high)[bound]
        if not (math.isfinite(at_guess) and at_guess != at_sigma):
            ends.append(guess)
            continue
        squared = sigma**2 + (guess**2 - sigma**2) * (target - at_sigma) / (at_guess - at_sigma)
        ends.append(math.sqrt(squared) if squared > 0 else guess)
    return ends[0], ends[1]


for _mag in (False, True):
    register(
        "pacbayes_mag" if _mag else "pacbayes",
        measure_pacbayes,
        fixed={"magnitude_aware": _mag},
        defaults={
            "target": 0.1,
            "criterion": "loss",
            **({"eps": 1e-3} if _mag else {}),
            "num_samples": 100,
            "rtol": 1e-3,
            "seed": 0,
            "params": None,
            "stored": True,
        },
        sampled=True,
    )
