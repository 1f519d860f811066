"""Worst-case sharpness (Andriushchenko et al. 2023) by Auto-PGD with restarts."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from .._progress import progress_bar
from .._provenance import provenance
from ..objective import Objective
from ..params import ParamSelection
from . import _checks
from ._evaluation import (
    State,
    chunks,
    dot,
    loss_and_grad,
    mean_loss,
    selection_setting,
    shifted,
    weights_of,
)
from ._guards import check_slope
from ._random import draw_like, generator_for
from ._stats import count_agreed, mean_and_stderr, mean_interval
from .registry import DEFAULT_RHO, register
from .result import SharpnessResult

__all__ = ["DEFAULT_FLIPS", "DEFAULT_RESTARTS", "measure_worst_case"]

#: Restarts by default, by ``p``: the largest loss on a ball has few local maxima (a convex
#: quadratic at most two), on a box it has many (one at many vertices for a quadratic).
DEFAULT_RESTARTS = {2: 3, math.inf: 20}
#: Single-coordinate flips that end each ``p = inf`` restart (see :func:`measure_worst_case`).
DEFAULT_FLIPS = 4
_MOMENTUM = 0.75  # Auto-PGD's alpha
_SUCCESS = 0.75  # Auto-PGD's rho: share of rising steps below which the step is halved


def _checkpoints(num_ascent_steps: int) -> set[int]:
    """Auto-PGD's checkpoints ``ceil(p_j N)``: ``p_0 = 0``, ``p_1 = 0.22``,
    ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return {math.ceil(q * num_ascent_steps) for q in p[1:] if q <= 1}


def measure_worst_case(
    objective: Objective,
    *,
    p: float = 2,
    adaptive: bool = False,
    rho: float | None = None,
    batch_size: int | None = None,
    num_batches: int | None = None,
    num_ascent_steps: int = 10,
    num_restarts: int | None = None,
    num_flips: int | None = None,
    step_size: float | None = None,
    random_init: bool = True,
    seed: int = 0,
    params: ParamSelection = None,
    progress: bool = True,
    num_steps: int | None = None,
) -> SharpnessResult:
    """Worst-case sharpness ``max_{||delta / c||_p <= rho} L_B(w + delta) - L_B(w)``, averaged
    over batches ``B``.

    Auto-PGD (Croce and Hein 2020, used by Andriushchenko et al. 2023) in the rescaled
    coordinates ``u = delta / c`` (``c = |w|`` when ``adaptive``, else 1), where the
    gradient is ``c * grad L``: steps of length ``eta`` along the normalized gradient
    (``p = 2``, then projection on the ball ``||u||_2 <= rho``) or along its sign
    (``p = inf``, then clipping to ``[-rho, rho]``), with momentum 0.75; ``eta`` starts at
    ``step_size`` and is halved at Auto-PGD's checkpoints when the loss stops rising, the
    search going on from the best point. Working in ``u`` makes the adaptive measure
    invariant to rescalings that leave a ReLU network's function unchanged.

    The loss has many local maxima in the set (a convex quadratic has one at many vertices
    of a box), so the search runs ``num_restarts`` times from random starts and the best
    loss met is kept: the value is a LOWER BOUND of the true maximum. Sign steps stop at
    corners ``u = rho s`` where no step along the gradient's sign gains but flipping one
    coordinate still does (for a quadratic the gain is ``-2 rho s_i g_i + 2 rho^2 H_ii``,
    positive for a small agreement ``s_i g_i``), so for ``p = inf`` each restart ends with
    ``num_flips`` trial flips of its best corner, least agreeing coordinate first, each
    kept when the loss rises (one gradient evaluation a trial, decided on the device).
    ``extra["num_agreed"]`` says how many restarts came within 1% of the best rise (the
    fewest over batches); few means that more restarts may find more.

    Args:
        objective: the loss and data; its model is never changed.
        p: 2 or ``math.inf``.
        adaptive: use ``c = |w|`` (Kwon et al. 2021) instead of ``c = 1``.
        rho: radius in ``u``; default from :data:`DEFAULT_RHO`.
        batch_size: ``m`` of m-sharpness: examples per batch, regrouped in order (the last
            batch may be smaller; with ``shard_data``, the batches of the whole data, each
            rank holding its slices of them); ``None``: all examples in one batch (the exact
            mean loss).
        num_batches: use only the first this many batches; ``None``: all.
        num_ascent_steps: gradient ascent steps per restart.
        num_restarts: searches per batch; default from :data:`DEFAULT_RESTARTS` (3 for
            ``p = 2``, 20 for ``p = inf``).
        num_flips: trial flips that end each ``p = inf`` restart; default
            :data:`DEFAULT_FLIPS` (4); ``p = 2`` takes only 0 (its default).
        step_size: first step length in ``u``; default ``2 rho`` (Auto-PGD's).
        random_init: start every search from a uniform random point of the sphere
            (``p = 2``) or box (``p = inf``); with ``False`` the first search starts from 0
            (where the gradient vanishes at a minimum) and the others from random points.
        seed: seeds the random starts.
        params: perturb only these weights (names, glob patterns, a predicate or
            ``"trainable"``, see :func:`landscape.params.select_names`); the others stay.
        progress: show a tqdm bar of the gradient evaluations.
        num_steps: the old name of ``num_ascent_steps`` (deprecated; ``num_steps`` now
            means optimizer steps only).

    Returns:
        A :class:`SharpnessResult` named e.g. ``"adaptive_worst_l2"``: the mean over batches,
        its standard error and interval (NaN and ``None`` for one batch: they cannot be
        estimated), the per-batch values as ``samples``; ``extra`` holds ``num_agreed``.
        A :class:`~landscape.sharpness.NotAMinimumWarning` is issued when the gradient (over
        the batches used, one more gradient evaluation) makes most of the value (see
        :mod:`landscape.sharpness._guards`).

    Raises:
        ValueError: ``p`` not 2 or inf, a non-positive ``rho``/``step_size``/count, flips for
            ``p = 2``, or a ``batch_size`` on an objective whose batches are not
            ``(inputs, targets)``.
        TypeError: a count, flag or seed of the wrong type.

    Example:
        >>> from landscape.sharpness._example import example_objective
        >>> result = measure_worst_case(example_objective(), rho=0.1)
        >>> result.name, result.value >= 0
        ('worst_l2', True)
    """
    _checks.check_objective(objective)
    if num_steps is not None:  # 0.2's name, one setting of the registry's worst_* measures
        if num_ascent_steps != 10:
            raise TypeError(
                "expected num_ascent_steps= or its old name num_steps=, got both "
                f"(num_ascent_steps={num_ascent_steps!r}, num_steps={num_steps!r})"
            )
        warnings.warn(
            "measure_worst_case: num_steps= is renamed num_ascent_steps=; the old name will be "
            "removed in a future version",
            DeprecationWarning,
            stacklevel=2,
        )
        num_ascent_steps = num_steps
    if p not in (2, math.inf):
        raise ValueError(f"expected p 2 or math.inf, got {p!r}")
    adaptive = _checks.check_flag("adaptive", adaptive)
    name = ("adaptive_" if adaptive else "") + ("worst_l2" if p == 2 else "worst_linf")
    rho = _checks.check_positive("rho", DEFAULT_RHO[name] if rho is None else rho)
    step_size = _checks.check_positive("step_size", 2 * rho if step_size is None else step_size)
    num_ascent_steps = _checks.check_count("num_ascent_steps", num_ascent_steps)
    if num_restarts is None:
        num_restarts = DEFAULT_RESTARTS[p]
    num_restarts = _checks.check_count("num_restarts", num_restarts)
    if num_flips is None:
        num_flips = DEFAULT_FLIPS if p == math.inf else 0
    elif num_flips != 0 or isinstance(num_flips, bool):
        num_flips = _checks.check_count("num_flips", num_flips)
    if p == 2 and num_flips:
        raise ValueError(f"expected num_flips 0 for p = 2 (a ball has no corners), got {num_flips}")
    random_init = _checks.check_flag("random_init", random_init)
    seed = _checks.check_seed(seed)
    if batch_size is not None:
        batch_size = min(_checks.check_count("batch_size", batch_size), objective.num_examples)
    groups = chunks(objective, batch_size)
    if num_batches is not None:
        groups = groups[: _checks.check_count("num_batches", num_batches)]
    weights = weights_of(objective, params)
    scales = {n: w.abs() if adaptive else torch.ones_like(w) for n, w in weights.items()}
    generator = generator_for(weights, seed)
    # The search runs on the device: losses, norms, the step length and its decisions are
    # 0-dim tensors there, so the host reads nothing per step (each read a sync on CUDA).

    def select(condition: torch.Tensor, a: State, b: State) -> State:
        return {n: torch.where(condition, t, b[n]) for n, t in a.items()}

    def project(u: State) -> State:
        if p == 2:
            norm = dot(u, u).sqrt()
            factor = torch.where(norm <= rho, 1.0, rho / norm)
            return {n: t * factor for n, t in u.items()}
        return {n: t.clamp(-rho, rho) for n, t in u.items()}

    def step(u: State, grad: State, eta: torch.Tensor) -> State:
        if p == 2:
            norm = dot(grad, grad).sqrt()
            factor = torch.where(norm == 0, 0.0, eta / norm)  # no step from a zero gradient
            return {n: t + factor * grad[n] for n, t in u.items()}
        return {n: t + eta * grad[n].sign() for n, t in u.items()}

    def start(restart: int) -> State:
        if restart == 0 and not random_init:
            return {n: torch.zeros_like(w) for n, w in weights.items()}
        if p == 2:
            u = draw_like(weights, generator, "normal")
            factor = rho / dot(u, u).sqrt()
            return {n: t * factor for n, t in u.items()}
        return {n: rho * t for n, t in draw_like(weights, generator, "uniform").items()}

    total = len(groups) * num_restarts * (num_ascent_steps + 1 + num_flips)
    bar = progress_bar(progress, desc=name, unit="grad", total=total)

    def value_and_ascent(u: State, chunk: list) -> tuple[torch.Tensor, State]:
        loss, grad = loss_and_grad(
            objective, shifted(weights, {n: scales[n] * t for n, t in u.items()}), chunk
        )
        bar.update()
        return loss, {n: scales[n] * g for n, g in grad.items()}

    checkpoints = _checkpoints(num_ascent_steps)

    def search(u: State, chunk: list) -> torch.Tensor:
        """The largest loss Auto-PGD meets from ``u`` (on the device)."""
        eta = torch.tensor(step_size, dtype=torch.float64, device=objective.device)
        loss, grad = value_and_ascent(u, chunk)
        best, best_u, best_grad = loss, u, grad
        previous = u
        rising, last, best_at_last = torch.zeros_like(loss), 0, best
        halved = torch.zeros_like(loss, dtype=torch.bool)
        for k in range(num_ascent_steps):
            z = project(step(u, grad, eta))
            if k > 0:
                z = project(
                    {
                        n: t + _MOMENTUM * (z[n] - t) + (1 - _MOMENTUM) * (t - previous[n])
                        for n, t in u.items()
                    }
                )
            new_loss, new_grad = value_and_ascent(z, chunk)
            rising = rising + (new_loss > loss)
            previous, u, loss, grad = u, z, new_loss, new_grad
            better = loss > best
            best = torch.where(better, loss, best)
            best_u, best_grad = select(better, u, best_u), select(better, grad, best_grad)
            if k + 1 in checkpoints:
                stalled = ~halved & (best <= best_at_last)
                halved = (rising < _SUCCESS * (k + 1 - last)) | stalled
                eta = torch.where(halved, eta / 2, eta)
                u, previous = select(halved, best_u, u), select(halved, best_u, previous)
                loss, grad = torch.where(halved, best, loss), select(halved, best_grad, grad)
                rising, last, best_at_last = torch.zeros_like(rising), k + 1, best
        return flip_sweep(best, best_u, best_grad, chunk)

    names = list(weights)
    sizes = [weights[n].numel() for n in names]

    def flat(u: State) -> torch.Tensor:
        return torch.cat([u[n].reshape(-1) for n in names])

    def unflat(v: torch.Tensor) -> State:
        return {n: t.view_as(weights[n]) for n, t in zip(names, v.split(sizes), strict=True)}

    def flip_sweep(best: torch.Tensor, u: State, grad: State, chunk: list) -> torch.Tensor:
        """``num_flips`` single flips of the corner ``rho sign(u)``, least agreeing first."""
        if num_flips == 0:
            return best
        g, v = flat(grad), flat(u)
        signs = torch.where(v == 0, g, v).sign()
        signs = torch.where(signs == 0, 1.0, signs)
        tried = torch.zeros_like(signs, dtype=torch.bool)
        for _ in range(num_flips):
            i = torch.where(tried, torch.inf, signs * g).argmin().reshape(1)
            trial = signs * torch.ones_like(signs).index_fill_(0, i, -1.0)
            loss, trial_grad = value_and_ascent(unflat(rho * trial), chunk)
            rises = loss > best  # best: the loss at the corner, or above it
            signs = torch.where(rises, trial, signs)
            g = torch.where(rises, flat(trial_grad), g)
            tried = torch.where(rises, False, tried.index_fill(0, i, True))
            best = torch.where(rises, loss, best)
        return best

    bests, bases = [], []
    with bar:
        for chunk in groups:
            bases.append(mean_loss(objective, weights, chunk, on_device=True))
            bests.append(torch.stack([search(start(r), chunk) for r in range(num_restarts)]))
    found = (torch.stack(bests) - torch.stack(bases)[:, None]).cpu().numpy()  # one read
    rises = [max(float(row.max()), 0.0) for row in found]  # delta = 0 is in the set
    agreed = [count_agreed(row) for row in found]
    samples = np.asarray(rises)
    value, stderr = mean_and_stderr(samples)
    interval = mean_interval(samples) if len(samples) > 1 else None
    settings = {
        **provenance(objective),
        **selection_setting(objective, params, weights),
        "rho": rho,
        "batch_size": objective.num_examples if batch_size is None else batch_size,
        "num_batches": len(groups),
        "num_ascent_steps": num_ascent_steps,
        "num_restarts": num_restarts,
        "num_flips": num_flips,
        "step_size": step_size,
        "random_init": random_init,
        "seed": seed,
    }
    used = [batch for chunk in groups for batch in chunk]  # all the data, unless num_batches
    _, grad = loss_and_grad(objective, weights, used)
    scaled = [(scales[n] * g).reshape(-1).to(torch.float64) for n, g in grad.items()]
    dual = torch.linalg.vector_norm(torch.cat(scaled), 2 if p == 2 else 1)
    check_slope(name, rho * float(dual), value)
    extra = {"num_agreed": float(min(agreed))}
    return SharpnessResult(name, value, stderr, settings, extra, samples, interval)


_DEFAULTS = {
    "rho": None,
    "batch_size": None,
    "num_batches": None,
    "num_ascent_steps": 10,
    "num_restarts": None,
    "step_size": None,
    "random_init": True,
    "seed": 0,
    "params": None,
    "num_steps": None,  # the old name of num_ascent_steps
}
for _adaptive in (False, True):
    for _p, _suffix in ((2, "l2"), (math.inf, "linf")):
        register(
            ("adaptive_" if _adaptive else "") + f"worst_{_suffix}",
            measure_worst_case,
            fixed={"p": _p, "adaptive": _adaptive},
            defaults=_DEFAULTS if _p == 2 else {**_DEFAULTS, "num_flips": None},
        )
