"""Sharpness and flatness measures of a trained model, with error bars.

Every measure takes an :class:`~landscape.evaluate.Objective` (the exact mean loss over a data
set, evaluated through ``functional_call``, so the model is never changed) and returns a
:class:`SharpnessResult`. Perturbations apply to the weights (``model.named_parameters()``);
buffers such as BatchNorm running statistics stay as they are. Larger values mean sharper for
every measure. An objective that shards its data across ``torch.distributed`` ranks
(``shard_data=True``) works too: every sum over the data (losses, counts, gradients, Hessian
products) is all-reduced, so every rank makes the same calls and gets the value that one process
with all the data gets (up to the order of float64 additions). Stochastic measures
are reproducible from ``seed``: noise is drawn on the CPU in float64 from a ``torch.Generator``
(never the global one), then cast to each weight's dtype.

Measures, by contract name (``L`` the mean loss, ``w`` the weights, ``c = 1`` for the standard
and ``c = |w|`` for the adaptive versions):

- ``lambda_max``, ``trace``: top Hessian eigenvalue and Hessian trace (:mod:`landscape.hessian`).
- ``keskar``: epsilon-sharpness of Keskar et al. (2017),
  ``100 (max_{z in C_eps} L(w + A z) - L(w)) / (1 + L(w))`` with the box
  ``C_eps = {z : |z_i| <= eps (|(A^+ w)_i| + 1)}``, maximized by L-BFGS-B from a random point
  of the box; ``A`` is the identity (full space) or a random ``n x p`` Gaussian matrix.
- ``worst_l2``, ``worst_linf``, ``adaptive_worst_l2``, ``adaptive_worst_linf``: worst-case
  sharpness ``max_{||delta / c||_p <= rho} L_B(w + delta) - L_B(w)`` (Andriushchenko et al.
  2023), by projected gradient ascent in ``u = delta / c``, averaged over batches ``B`` of
  ``batch_size`` examples.
- ``avg_l2``, ``adaptive_avg_l2``: average-case sharpness
  ``E_{delta ~ N(0, rho^2 diag(c^2))} L(w + delta) - L(w)``, by Monte Carlo.
- ``pacbayes``, ``pacbayes_mag``: PAC-Bayes flatness (Jiang et al. 2020): the largest ``sigma``
  such that Gaussian noise of std ``sigma`` (or ``sqrt(sigma^2 w_i^2 + eps^2)``) raises the loss
  by at most ``target``; the value is ``1 / sigma^2``.
- ``fisher_rao``: squared Fisher-Rao norm (Liang et al. 2019), ``E_(x,y)[<w, grad_w l(x, y)>^2]``.
- ``relative_flatness``: Petzka et al. (2021), ``sum_{s,s'} <w_s, w_s'> Tr(H_{s,s'})`` on the
  rows ``w_s`` of one Linear layer's weight.
- ``rise``: ``L(w + rho d) - L(w)`` averaged over filter-normalized random directions ``d``.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.optimize
import torch
from torch import nn

from . import distributed
from .directions import random_direction
from .evaluate import Objective
from .hessian import hessian_eigenpairs, hessian_trace
from .storage import open_landscape_file, read_group, write_group

State = dict[str, torch.Tensor]
Chunk = list[Any]

__all__ = [
    "DEFAULT_RHO",
    "MEASURES",
    "SharpnessResult",
    "sharpness",
    "measure_hessian",
    "measure_keskar",
    "measure_worst_case",
    "measure_average_case",
    "measure_pacbayes",
    "measure_fisher_rao",
    "measure_relative_flatness",
    "measure_rise",
    "save_sharpness",
    "load_sharpness",
]

#: Default radius ``rho`` of each measure that has one (values in the range used by SAM,
#: ASAM and Andriushchenko et al. 2023; ``rise`` in filter-normalized units).
DEFAULT_RHO = {
    "worst_l2": 0.05,
    "worst_linf": 0.001,
    "adaptive_worst_l2": 0.5,
    "adaptive_worst_linf": 0.002,
    "avg_l2": 0.01,
    "adaptive_avg_l2": 0.1,
    "rise": 0.25,
}


@dataclass(frozen=True)
class SharpnessResult:
    """One sharpness measure and everything that made it.

    Attributes:
        name: the measure's contract name (``"worst_l2"``, ``"pacbayes"``, ...).
        value: the measure; larger means sharper.
        stderr: its standard error (0.0 for a deterministic measure).
        settings: every setting that made it, defaults and ``seed`` included.
        extra: derived quantities worth keeping (``loss`` at the weights, ``sigma`` for
            PAC-Bayes, ...).
        samples: the per-sample (or per-batch) values behind ``value``, if any.
    """

    name: str
    value: float
    stderr: float
    settings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)
    samples: np.ndarray | None = None


# ---------------------------------------------------------------- checks
def _check_objective(objective: Any) -> None:
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be a landscape Objective, got {type(objective).__name__}")


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return float(value)


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
    return int(seed)


# ---------------------------------------------------------------- helpers
def _weights(objective: Objective) -> State:
    """The weights at the objective's base state, in ``named_parameters`` order."""
    return {n: objective.base_state[n] for n, _ in objective.model.named_parameters()}


def _scales(weights: State, adaptive: bool) -> State:
    """``c`` of the perturbation set: ``|w|`` (adaptive) or ones."""
    return {n: w.abs() if adaptive else torch.ones_like(w) for n, w in weights.items()}


def _randn_like(state: State, generator: torch.Generator) -> State:
    """Standard Gaussian entries, drawn on the CPU in float64, cast like ``state``."""
    return {
        n: torch.randn(t.shape, generator=generator, dtype=torch.float64).to(t.device, t.dtype)
        for n, t in state.items()
    }


def _shifted(weights: State, delta: State) -> State:
    return {n: w + delta[n] for n, w in weights.items()}


def _dot(a: State, b: State) -> torch.Tensor:
    return sum((a[n] * b[n]).sum() for n in a)


def _mean_and_stderr(samples: np.ndarray) -> tuple[float, float]:
    mean = float(np.mean(samples))
    stderr = float(np.std(samples, ddof=1) / math.sqrt(len(samples))) if len(samples) > 1 else 0.0
    return mean, stderr


def _summed(objective: Objective, *values: float | torch.Tensor) -> list[torch.Tensor]:
    """``values`` summed over the ranks that share the objective's data, in one all-reduce, as
    float64 tensors of their shapes (the values themselves without ``shard_data``)."""
    parts = [torch.as_tensor(v, dtype=torch.float64, device=objective.device) for v in values]
    flat = objective.all_reduce(torch.cat([t.reshape(-1) for t in parts]))
    pieces = flat.split([t.numel() for t in parts])
    return [piece.view_as(t) for piece, t in zip(pieces, parts, strict=True)]


@torch.no_grad()
def _mean_loss(objective: Objective, weights: State, chunk: Chunk, metric: str = "loss") -> float:
    """Mean of ``metric`` over the examples of ``chunk`` (a list of batches; with ``shard_data``
    this rank's part of it) at ``weights``."""
    full = objective.full_state(weights)
    total, count = 0.0, 0
    for batch in chunk:
        sums, n = objective.batch_sums(full, batch, with_metrics=metric != "loss")
        total += float(sums[metric].to(torch.float64))
        count += n
    total, count = _summed(objective, total, count)
    return float(total / count)


def _loss_and_grad(objective: Objective, weights: State, chunk: Chunk) -> tuple[float, State]:
    """Mean loss over ``chunk`` (as in :func:`_mean_loss`) at ``weights`` and its gradient with
    respect to the weights."""
    leaves = {n: w.detach().requires_grad_(True) for n, w in weights.items()}
    full = objective.full_state(leaves)
    total, count = 0.0, 0
    grads = {n: torch.zeros_like(w) for n, w in weights.items()}
    for batch in chunk:
        sums, n = objective.batch_sums(full, batch, with_metrics=False)
        parts = torch.autograd.grad(
            sums["loss"], list(leaves.values()), allow_unused=True, materialize_grads=True
        )
        for name, g in zip(leaves, parts, strict=True):
            grads[name] += g
        total += float(sums["loss"].detach().to(torch.float64))
        count += n
    total, count, *summed = _summed(objective, total, count, *grads.values())
    mean_grads = {n: (g / count).to(weights[n]) for n, g in zip(grads, summed, strict=True)}
    return float(total / count), mean_grads


def _is_pair(batch: Any) -> bool:
    """Whether a batch is ``(inputs, targets)`` tensors, which can be sliced by example."""
    return (
        isinstance(batch, (tuple, list))
        and len(batch) == 2
        and all(isinstance(t, torch.Tensor) for t in batch)
    )


def _chunks(objective: Objective, batch_size: int | None) -> list[Chunk]:
    """The data as groups of ``batch_size`` examples in order (the last may be smaller), each
    a list of slices of the objective's batches; ``None`` (or a size covering the data) gives
    one group: the objective's own batches.

    With ``shard_data`` the groups are those of the whole data, and each rank gets its own
    slices of every group (possibly none), so sums over a group are all-reduced like sums over
    the data, and every rank has the same number of groups.
    """
    batches = list(objective.batches())
    if batch_size is None or batch_size >= objective.num_examples:
        return [batches]
    if not all(_is_pair(b) for b in batches):
        raise ValueError(
            "batch_size needs batches of (inputs, targets) tensors to regroup the examples; "
            "this objective has other batches (a batch_loss closure?): use batch_size=None"
        )
    mine = [len(b[1]) for b in batches]
    sizes = distributed.all_gather_objects(mine) if objective.shard_data else [mine]
    me = distributed.rank() if objective.shard_data else 0
    chunks: list[Chunk] = [[] for _ in range(math.ceil(objective.num_examples / batch_size))]
    # Batch i of the data is batch i // world_size of rank i % world_size.
    order = [(r, j) for j in range(max(map(len, sizes))) for r, s in enumerate(sizes) if j < len(s)]
    start = 0  # position in the data of the first example of batch (r, j)
    for r, j in order:
        end = start + sizes[r][j]
        if r == me:
            inputs, targets = batches[j]
            for c in range(start // batch_size, math.ceil(end / batch_size)):
                lo = max(c * batch_size, start) - start
                hi = min((c + 1) * batch_size, end) - start
                chunks[c].append((inputs[lo:hi], targets[lo:hi]))
        start = end
    return chunks


# ---------------------------------------------------------------- Hessian
def measure_hessian(
    objective: Objective,
    *,
    quantity: Literal["lambda_max", "trace"] = "lambda_max",
    num_probes: int = 99,
    seed: int = 0,
) -> SharpnessResult:
    """The top eigenvalue (Lanczos) or the trace (Hutch++) of the Hessian of the mean loss.

    Args:
        objective: the loss and data; its model is never changed.
        quantity: ``"lambda_max"`` or ``"trace"``.
        num_probes: probe vectors for the trace estimate.
        seed: seeds the Lanczos start vector and the trace probes.

    Returns:
        A :class:`SharpnessResult` named ``quantity`` with the Hessian routine's settings; the
        trace carries its standard error and samples, the eigenvalue its explicit residual and
        ``converged`` (1.0 or 0.0) in ``extra``.

    Raises:
        ValueError: an unknown ``quantity`` or a bad ``num_probes``.

    Example:
        >>> data = (torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
        >>> model = nn.Linear(2, 1, bias=False).double()
        >>> round(measure_hessian(Objective(model, data, loss="mse")).value, 6)
        1.0
    """
    _check_objective(objective)
    seed = _check_seed(seed)
    if quantity == "lambda_max":
        eig = hessian_eigenpairs(objective, k=1, which="LA", seed=seed)
        extra = {
            "residual": float(eig.residuals[0]),
            "converged": float(eig.converged),
            "num_hvps": float(eig.num_hvps),
        }
        return SharpnessResult(
            "lambda_max", float(eig.eigenvalues[0]), 0.0, _plain(eig.settings), extra
        )
    if quantity == "trace":
        num_probes = _check_count("num_probes", num_probes)
        tr = hessian_trace(objective, num_probes=num_probes, method="hutch++", seed=seed)
        extra = {"num_hvps": float(tr.num_hvps)}
        settings = {**_plain(tr.settings), "method": tr.method}
        return SharpnessResult(
            "trace", float(tr.value), float(tr.stderr), settings, extra, tr.samples
        )
    raise ValueError(f"quantity must be 'lambda_max' or 'trace', got {quantity!r}")


def _plain(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar (or None) entries of a settings mapping, which an HDF5 attribute holds."""
    return {
        k: v for k, v in settings.items() if v is None or isinstance(v, (bool, int, float, str))
    }


# ---------------------------------------------------------------- Keskar et al.
def measure_keskar(
    objective: Objective,
    *,
    eps: float = 1e-3,
    subspace_dim: int | None = None,
    num_iters: int = 10,
    seed: int = 0,
) -> SharpnessResult:
    """Epsilon-sharpness of Keskar et al. (2017), maximized with L-BFGS-B.

    ``100 (max_{z in C_eps} L(w + A z) - L(w)) / (1 + L(w))`` over the box
    ``C_eps = {z : |z_i| <= eps (|(A^+ w)_i| + 1)}``. The search starts from a uniform random
    point of the box: at a minimum the gradient is zero and a search started there stays.

    Args:
        objective: the loss and data; its model is never changed.
        eps: relative size of the box.
        subspace_dim: ``None`` for the full space (``A = I``), or ``p`` for a random subspace
            (``A`` an ``n x p`` matrix of standard Gaussian entries, stored densely).
        num_iters: L-BFGS-B iterations (``maxiter``).
        seed: seeds ``A`` and the starting point.

    Returns:
        A deterministic :class:`SharpnessResult` named ``"keskar"`` (``stderr`` 0); ``extra``
        holds ``loss`` and ``max_loss``.

    Raises:
        ValueError: ``eps <= 0``, ``subspace_dim < 1`` or ``num_iters < 1``.

    Example:
        >>> data = (torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
        >>> model = nn.Linear(2, 1, bias=False).double()
        >>> measure_keskar(Objective(model, data, loss="mse")).value > 0
        True
    """
    _check_objective(objective)
    eps = _check_positive("eps", eps)
    num_iters = _check_count("num_iters", num_iters)
    seed = _check_seed(seed)
    weights = _weights(objective)
    names = list(weights)
    x = torch.cat([w.reshape(-1).to(torch.float64).cpu() for w in weights.values()])
    generator = torch.Generator().manual_seed(seed)
    if subspace_dim is None:
        matrix = None
        centre = x
    else:
        subspace_dim = _check_count("subspace_dim", subspace_dim)
        matrix = torch.randn(len(x), subspace_dim, generator=generator, dtype=torch.float64)
        centre = torch.linalg.pinv(matrix) @ x
    bound = (eps * (centre.abs() + 1)).numpy()
    start = (2 * torch.rand(len(bound), generator=generator, dtype=torch.float64) - 1).numpy()
    data = list(objective.batches())

    def point(z: np.ndarray) -> State:
        step = torch.from_numpy(z)
        flat = step if matrix is None else matrix @ step
        parts = torch.split(flat, [w.numel() for w in weights.values()])
        delta = {
            n: p.reshape(weights[n].shape).to(weights[n].device, weights[n].dtype)
            for n, p in zip(names, parts, strict=True)
        }
        return _shifted(weights, delta)

    def negative(z: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad = _loss_and_grad(objective, point(z), data)
        flat = torch.cat([grad[n].reshape(-1).to(torch.float64).cpu() for n in names])
        if matrix is not None:
            flat = matrix.T @ flat
        return -loss, -flat.numpy()

    found = scipy.optimize.minimize(
        negative,
        start * bound,
        jac=True,
        method="L-BFGS-B",
        bounds=scipy.optimize.Bounds(-bound, bound),
        options={"maxiter": num_iters},
    )
    loss = _mean_loss(objective, weights, data)
    max_loss = -float(found.fun)  # L-BFGS-B never ends below its start
    value = 100 * (max_loss - loss) / (1 + loss)
    settings = {"eps": eps, "subspace_dim": subspace_dim, "num_iters": num_iters, "seed": seed}
    return SharpnessResult("keskar", value, 0.0, settings, {"loss": loss, "max_loss": max_loss})


# ---------------------------------------------------------------- worst case
def measure_worst_case(
    objective: Objective,
    *,
    p: float = 2,
    adaptive: bool = False,
    rho: float | None = None,
    batch_size: int | None = None,
    num_batches: int | None = None,
    num_steps: int = 20,
    step_size: float | None = None,
    random_init: bool = True,
    seed: int = 0,
) -> SharpnessResult:
    """Worst-case sharpness ``max_{||delta / c||_p <= rho} L_B(w + delta) - L_B(w)``, averaged
    over batches ``B``.

    Projected gradient ascent in the rescaled coordinates ``u = delta / c`` (``c = |w|`` when
    ``adaptive``, else 1), where the gradient is ``c * grad L``: for ``p = 2`` a step of
    length ``step_size`` along it, then projection on the ball ``||u||_2 <= rho``; for
    ``p = inf`` a signed step, then clipping to ``[-rho, rho]``. Working in ``u`` makes the
    adaptive measure invariant to rescalings that leave a ReLU network's function unchanged.
    The largest loss met along the path is kept, so the value never exceeds the true maximum.

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
        num_steps: gradient steps per batch.
        step_size: step length in ``u``; default ``rho``.
        random_init: start from a uniform random point of the sphere (``p = 2``) or box
            (``p = inf``) instead of 0, where the gradient vanishes at a minimum.
        seed: seeds the random starts.

    Returns:
        A :class:`SharpnessResult` named e.g. ``"adaptive_worst_l2"``: the mean over batches,
        its standard error (0 for one batch), the per-batch values as ``samples``.

    Raises:
        ValueError: ``p`` not 2 or inf, a non-positive ``rho``/``step_size``/count, or a
            ``batch_size`` on an objective whose batches are not ``(inputs, targets)``.

    Example:
        >>> data = (torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
        >>> model = nn.Linear(2, 1, bias=False).double()
        >>> result = measure_worst_case(Objective(model, data, loss="mse"), rho=0.1)
        >>> result.name, result.value >= 0
        ('worst_l2', True)
    """
    _check_objective(objective)
    if p not in (2, math.inf):
        raise ValueError(f"p must be 2 or math.inf, got {p!r}")
    name = ("adaptive_" if adaptive else "") + ("worst_l2" if p == 2 else "worst_linf")
    rho = _check_positive("rho", DEFAULT_RHO[name] if rho is None else rho)
    step_size = _check_positive("step_size", rho if step_size is None else step_size)
    num_steps = _check_count("num_steps", num_steps)
    seed = _check_seed(seed)
    if batch_size is not None:
        batch_size = min(_check_count("batch_size", batch_size), objective.num_examples)
    chunks = _chunks(objective, batch_size)
    if num_batches is not None:
        chunks = chunks[: _check_count("num_batches", num_batches)]
    weights = _weights(objective)
    scales = _scales(weights, adaptive)
    generator = torch.Generator().manual_seed(seed)

    def project(u: State) -> State:
        if p == 2:
            norm = float(torch.sqrt(_dot(u, u)))
            return u if norm <= rho else {n: t * (rho / norm) for n, t in u.items()}
        return {n: t.clamp(-rho, rho) for n, t in u.items()}

    def start() -> State:
        if not random_init:
            return {n: torch.zeros_like(w) for n, w in weights.items()}
        if p == 2:
            u = _randn_like(weights, generator)
            norm = float(torch.sqrt(_dot(u, u)))
            return {n: t * (rho / norm) for n, t in u.items()}
        return {
            n: ((2 * torch.rand(w.shape, generator=generator, dtype=torch.float64) - 1) * rho).to(
                w.device, w.dtype
            )
            for n, w in weights.items()
        }

    def at(u: State) -> State:
        return _shifted(weights, {n: scales[n] * t for n, t in u.items()})

    rises = []
    for chunk in chunks:
        base = _mean_loss(objective, weights, chunk)
        best = base
        u = start()
        for _ in range(num_steps):
            loss, grad = _loss_and_grad(objective, at(u), chunk)
            best = max(best, loss)
            ascent = {n: scales[n] * g for n, g in grad.items()}
            if p == 2:
                norm = float(torch.sqrt(_dot(ascent, ascent)))
                if norm == 0:
                    break
                u = project({n: t + (step_size / norm) * ascent[n] for n, t in u.items()})
            else:
                u = project({n: t + step_size * ascent[n].sign() for n, t in u.items()})
        best = max(best, _mean_loss(objective, at(u), chunk))
        rises.append(best - base)
    samples = np.asarray(rises)
    value, stderr = _mean_and_stderr(samples)
    settings = {
        "rho": rho,
        "batch_size": objective.num_examples if batch_size is None else batch_size,
        "num_batches": len(chunks),
        "num_steps": num_steps,
        "step_size": step_size,
        "random_init": bool(random_init),
        "seed": seed,
    }
    return SharpnessResult(name, value, stderr, settings, samples=samples)


# ---------------------------------------------------------------- average case
def measure_average_case(
    objective: Objective,
    *,
    adaptive: bool = False,
    rho: float | None = None,
    num_samples: int = 100,
    seed: int = 0,
) -> SharpnessResult:
    """Average-case sharpness ``E_{delta ~ N(0, rho^2 diag(c^2))} L(w + delta) - L(w)``.

    Monte Carlo over ``num_samples`` Gaussian draws ``z``, with ``delta = rho c z`` and
    ``c = |w|`` (adaptive) or 1; each draw is evaluated on the whole data set.

    Args:
        objective: the loss and data; its model is never changed.
        adaptive: use ``c = |w|``.
        rho: noise scale; default from :data:`DEFAULT_RHO`.
        num_samples: Monte Carlo draws.
        seed: seeds the draws (the same seed gives the same ``z`` at any weights).

    Returns:
        A :class:`SharpnessResult` named ``"avg_l2"`` or ``"adaptive_avg_l2"`` with the
        standard error over draws and the per-draw rises as ``samples``.

    Raises:
        ValueError: a non-positive ``rho`` or ``num_samples``.

    Example:
        >>> data = (torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
        >>> model = nn.Linear(2, 1, bias=False).double()
        >>> measure_average_case(Objective(model, data, loss="mse"), num_samples=4).name
        'avg_l2'
    """
    _check_objective(objective)
    name = "adaptive_avg_l2" if adaptive else "avg_l2"
    rho = _check_positive("rho", DEFAULT_RHO[name] if rho is None else rho)
    num_samples = _check_count("num_samples", num_samples)
    seed = _check_seed(seed)
    weights = _weights(objective)
    scales = _scales(weights, adaptive)
    data = list(objective.batches())
    base = _mean_loss(objective, weights, data)
    rises = []
    for z in _draws(weights, seed, num_samples):
        delta = {n: rho * scales[n] * t for n, t in z.items()}
        rises.append(_mean_loss(objective, _shifted(weights, delta), data) - base)
    samples = np.asarray(rises)
    value, stderr = _mean_and_stderr(samples)
    settings = {"rho": rho, "num_samples": num_samples, "seed": seed}
    return SharpnessResult(name, value, stderr, settings, {"loss": base}, samples)


def _draws(weights: State, seed: int, num: int) -> Iterator[State]:
    """``num`` standard Gaussian states, the same sequence for the same ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(num):
        yield _randn_like(weights, generator)


# ---------------------------------------------------------------- PAC-Bayes
def measure_pacbayes(
    objective: Objective,
    *,
    magnitude_aware: bool = False,
    target: float = 0.1,
    criterion: Literal["loss", "accuracy"] = "loss",
    eps: float = 1e-3,
    num_samples: int = 10,
    rtol: float = 1e-3,
    seed: int = 0,
) -> SharpnessResult:
    """PAC-Bayes flatness (Jiang et al. 2020): ``1 / sigma^2`` for the largest tolerable ``sigma``.

    ``sigma`` is the largest noise level at which Gaussian noise of std ``sigma``
    (``magnitude_aware=False``) or ``sqrt(sigma^2 w_i^2 + eps^2)`` (``True``) raises the mean
    loss by at most ``target`` (or lowers the accuracy by at most ``target``), estimated with
    ``num_samples`` draws. The same draws ``z`` serve every ``sigma`` (common random numbers),
    so the estimate is a smooth function of ``sigma``: it is bracketed by doubling or halving
    from 1 and then bisected to a relative width ``rtol``; the reported ``sigma`` is the lower
    end (its estimate is within the target). If even ``sigma = 0`` exceeds the target (the
    ``eps`` floor alone does), ``sigma`` is 0 and the value inf.

    Args:
        objective: the loss and data; its model is never changed.
        magnitude_aware: the ``pacbayes_mag`` variant.
        target: tolerated rise of the loss (or drop of the accuracy).
        criterion: ``"loss"`` or ``"accuracy"`` (needs an objective with accuracy).
        eps: noise floor of the magnitude-aware variant.
        num_samples: Monte Carlo draws per noise level.
        rtol: relative width of the final bracket.
        seed: seeds the draws.

    Returns:
        A :class:`SharpnessResult` named ``"pacbayes"`` or ``"pacbayes_mag"`` with value
        ``1 / sigma^2``, its delta-method standard error, ``extra`` ``sigma``,
        ``sigma_stderr`` and the unperturbed ``loss`` (or ``accuracy``), and the per-draw
        rises (or drops) at ``sigma`` as ``samples``.

    Raises:
        ValueError: a non-positive setting, an unknown criterion, or accuracy requested from
            an objective without it.
        RuntimeError: the estimate stays within the target for every ``sigma`` up to 2**40.

    Example:
        >>> data = (torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
        >>> model = nn.Linear(2, 1, bias=False).double()
        >>> result = measure_pacbayes(Objective(model, data, loss="mse"), num_samples=4)
        >>> result.extra["sigma"] > 0
        True
    """
    _check_objective(objective)
    name = "pacbayes_mag" if magnitude_aware else "pacbayes"
    target = _check_positive("target", target)
    eps = _check_positive("eps", eps)
    rtol = _check_positive("rtol", rtol)
    num_samples = _check_count("num_samples", num_samples)
    seed = _check_seed(seed)
    if criterion not in ("loss", "accuracy"):
        raise ValueError(f"criterion must be 'loss' or 'accuracy', got {criterion!r}")
    if criterion == "accuracy" and "accuracy" not in objective.names:
        raise ValueError(
            f"criterion='accuracy' needs an objective with accuracy; it has {objective.names}"
        )
    weights = _weights(objective)
    data = list(objective.batches())
    sign = 1.0 if criterion == "loss" else -1.0  # a rise of the loss, a drop of the accuracy
    base = _mean_loss(objective, weights, data, criterion)

    def rises(sigma: float) -> np.ndarray:
        out = []
        for z in _draws(weights, seed, num_samples):
            if magnitude_aware:
                delta = {
                    n: torch.sqrt(sigma**2 * weights[n] ** 2 + eps**2) * t for n, t in z.items()
                }
            else:
                delta = {n: sigma * t for n, t in z.items()}
            out.append(
                sign * (_mean_loss(objective, _shifted(weights, delta), data, criterion) - base)
            )
        return np.asarray(out)

    lo, hi = _bracket(rises, target, magnitude_aware)
    settings = {
        "target": target,
        "criterion": criterion,
        "num_samples": num_samples,
        "rtol": rtol,
        "seed": seed,
    }
    if magnitude_aware:
        settings["eps"] = eps
    if lo[0] == 0:
        extra = {"sigma": 0.0, "sigma_stderr": math.nan, criterion: base}
        return SharpnessResult(name, math.inf, math.nan, settings, extra, lo[1])
    while hi[0] - lo[0] > rtol * hi[0]:
        mid = (lo[0] + hi[0]) / 2
        point = (mid, rises(mid))
        if point[1].mean() <= target:
            lo = point
        else:
            hi = point
    sigma, samples = lo
    slope = (hi[1].mean() - samples.mean()) / (hi[0] - sigma)
    sigma_stderr = float(_mean_and_stderr(samples)[1] / slope) if slope > 0 else math.nan
    extra = {"sigma": sigma, "sigma_stderr": sigma_stderr, criterion: base}
    return SharpnessResult(name, sigma**-2, 2 * sigma**-3 * sigma_stderr, settings, extra, samples)


def _bracket(
    rises: Callable[[float], np.ndarray], target: float, check_zero: bool
) -> tuple[tuple[float, np.ndarray], tuple[float, np.ndarray]]:
    """Points ``(sigma, rises)`` ``lo`` within the target and ``hi`` above it, ``hi = 2 lo``
    (or ``lo = 0`` when even ``sigma = 0`` is above the target)."""
    if check_zero:
        zero = rises(0.0)
        if zero.mean() > target:
            return (0.0, zero), (0.0, zero)
    point = (1.0, rises(1.0))
    if point[1].mean() <= target:
        for _ in range(40):
            above = (2 * point[0], rises(2 * point[0]))
            if above[1].mean() > target:
                return point, above
            point = above
        raise RuntimeError(
            f"the estimate stays within target={target} up to sigma={point[0]:g}; the loss does "
            "not respond to noise: check the objective, or use a smaller target"
        )
    for _ in range(60):
        below = (point[0] / 2, rises(point[0] / 2))
        if below[1].mean() <= target:
            return below, point
        point = below
    return (0.0, point[1]), point


# ---------------------------------------------------------------- Fisher-Rao norm
def measure_fisher_rao(objective: Objective) -> SharpnessResult:
    """Squared Fisher-Rao norm (Liang et al. 2019), ``E_(x,y)[<w, grad_w l(w; x, y)>^2]``.

    The expectation is the mean over the data set's examples and their labels (the empirical
    version). For a bias-free ReLU network of depth ``L + 1`` this equals
    ``(L + 1)^2 E[<dl/df, f>^2]``; in this form it needs no depth and is invariant to any
    rescaling of the weights that leaves the network's function unchanged.
    Each ``<w, grad l>`` is a forward-mode directional derivative along ``w``, vectorized over
    the examples of a batch.

    Args:
        objective: the loss and data (batches of ``(inputs, targets)`` tensors); its model is
            never changed.

    Returns:
        A deterministic :class:`SharpnessResult` named ``"fisher_rao"``.

    Raises:
        ValueError: the objective's batches are not ``(inputs, targets)`` tensors.

    Example:
        >>> data = (torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
        >>> model = nn.Linear(2, 1, bias=False).double()
        >>> measure_fisher_rao(Objective(model, data, loss="mse")).value > 0
        True
    """
    _check_objective(objective)
    weights = _weights(objective)

    def example_loss(w: State, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        batch = (x.unsqueeze(0), y.unsqueeze(0))
        sums, _ = objective.batch_sums(objective.full_state(w), batch, with_metrics=False)
        return sums["loss"]

    def along_weights(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(lambda w: example_loss(w, x, y), (weights,), (weights,))[1]

    total, count = 0.0, 0
    for batch in objective.batches():
        if not _is_pair(batch):
            raise ValueError(
                "fisher_rao needs per-example losses, so batches of (inputs, targets) tensors; "
                "this objective has other batches (a batch_loss closure?)"
            )
        values = torch.func.vmap(along_weights)(*batch)
        total += float(values.to(torch.float64).pow(2).sum())
        count += len(values)
    total, count = _summed(objective, total, count)
    return SharpnessResult("fisher_rao", float(total / count), 0.0, {})


# ---------------------------------------------------------------- relative flatness
def measure_relative_flatness(objective: Objective, *, layer: str | None = None) -> SharpnessResult:
    """Relative flatness of Petzka et al. (2021) on one Linear layer.

    ``kappa = sum_{s,s'} <w_s, w_s'> Tr(H_{s,s'})`` where ``w_s`` is row ``s`` of the layer's
    weight (the weights into unit ``s``) and ``H_{s,s'}`` the block of the Hessian of the mean
    loss with respect to rows ``s`` and ``s'``. The layer's full Hessian is formed
    (``torch.func.hessian``, ``(out * in)^2`` entries), so the layer must be small, as a
    network's last layers are. Invariant to rescaling the layer against its neighbours.

    Args:
        objective: the loss and data; its model is never changed.
        layer: name of a 2-D weight (e.g. ``"fc.weight"``); default the last ``nn.Linear``.

    Returns:
        A deterministic :class:`SharpnessResult` named ``"relative_flatness"``.

    Raises:
        ValueError: ``layer`` is not a 2-D weight, or the model has no ``nn.Linear``.

    Example:
        >>> data = (torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
        >>> model = nn.Linear(2, 1, bias=False).double()
        >>> measure_relative_flatness(Objective(model, data, loss="mse")).value > 0
        True
    """
    _check_objective(objective)
    weights = _weights(objective)
    if layer is None:
        linear = [n for n, m in objective.model.named_modules() if isinstance(m, nn.Linear)]
        if not linear:
            raise ValueError("the model has no nn.Linear; pass layer= the name of a 2-D weight")
        layer = f"{linear[-1]}.weight" if linear[-1] else "weight"
    if layer not in weights or weights[layer].dim() != 2:
        two_d = [n for n, w in weights.items() if w.dim() == 2]
        raise ValueError(f"layer must name a 2-D weight, one of {two_d}; got {layer!r}")
    weight = weights[layer]
    hessian = torch.zeros(weight.shape * 2, dtype=weight.dtype, device=weight.device)
    for batch in objective.batches():

        def batch_loss(w: torch.Tensor, batch: Any = batch) -> torch.Tensor:
            sums, _ = objective.batch_sums(
                objective.full_state({layer: w}), batch, with_metrics=False
            )
            return sums["loss"]

        hessian += torch.func.hessian(batch_loss)(weight)
    (hessian,) = _summed(objective, hessian)
    traces = torch.einsum("sjtj->st", hessian / objective.num_examples)
    value = float(((weight @ weight.T).to(torch.float64) * traces).sum())
    return SharpnessResult("relative_flatness", value, 0.0, {"layer": layer})


# ---------------------------------------------------------------- rise along directions
def measure_rise(
    objective: Objective,
    *,
    rho: float | None = None,
    num_samples: int = 10,
    norm: Literal["filter", "layer", "weight", "none"] = "filter",
    ignore: Literal["biasbn", "none"] = "biasbn",
    seed: int = 0,
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

    Returns:
        A :class:`SharpnessResult` named ``"rise"``: mean over directions, its standard error,
        the per-direction rises as ``samples``.

    Raises:
        ValueError: a non-positive ``rho`` or ``num_samples``, or a bad ``norm``/``ignore``.

    Example:
        >>> data = (torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
        >>> model = nn.Linear(2, 1, bias=False).double()
        >>> measure_rise(Objective(model, data, loss="mse"), num_samples=2).samples.shape
        (2,)
    """
    _check_objective(objective)
    rho = _check_positive("rho", DEFAULT_RHO["rise"] if rho is None else rho)
    num_samples = _check_count("num_samples", num_samples)
    seed = _check_seed(seed)
    weights = _weights(objective)
    data = list(objective.batches())
    base = _mean_loss(objective, weights, data)
    rises = []
    for i in range(num_samples):
        d = random_direction(weights, norm=norm, ignore=ignore, seed=seed + i)
        rises.append(
            _mean_loss(objective, _shifted(weights, {n: rho * d[n] for n in d}), data) - base
        )
    samples = np.asarray(rises)
    value, stderr = _mean_and_stderr(samples)
    settings = {
        "rho": rho,
        "num_samples": num_samples,
        "norm": norm,
        "ignore": ignore,
        "seed": seed,
    }
    return SharpnessResult("rise", value, stderr, settings, {"loss": base}, samples)


# ---------------------------------------------------------------- by name
#: Every measure by contract name: the function and the options the name fixes.
MEASURES: dict[str, tuple[Callable[..., SharpnessResult], dict[str, Any]]] = {
    "lambda_max": (measure_hessian, {"quantity": "lambda_max"}),
    "trace": (measure_hessian, {"quantity": "trace"}),
    "keskar": (measure_keskar, {}),
    "worst_l2": (measure_worst_case, {"p": 2, "adaptive": False}),
    "worst_linf": (measure_worst_case, {"p": math.inf, "adaptive": False}),
    "adaptive_worst_l2": (measure_worst_case, {"p": 2, "adaptive": True}),
    "adaptive_worst_linf": (measure_worst_case, {"p": math.inf, "adaptive": True}),
    "avg_l2": (measure_average_case, {"adaptive": False}),
    "adaptive_avg_l2": (measure_average_case, {"adaptive": True}),
    "pacbayes": (measure_pacbayes, {"magnitude_aware": False}),
    "pacbayes_mag": (measure_pacbayes, {"magnitude_aware": True}),
    "fisher_rao": (measure_fisher_rao, {}),
    "relative_flatness": (measure_relative_flatness, {}),
    "rise": (measure_rise, {}),
}


def _setting_names(name: str) -> set[str]:
    function, fixed = MEASURES[name]
    params = inspect.signature(function).parameters
    return {k for k, v in params.items() if v.kind is v.KEYWORD_ONLY} - set(fixed)


def sharpness(
    objective: Objective, names: Sequence[str], **settings: Any
) -> dict[str, SharpnessResult]:
    """Several measures by contract name, sharing settings such as ``rho`` and ``seed``.

    Each measure takes the settings it knows (see its ``measure_*`` function) and its own
    defaults for the others; a setting given as ``None`` means the default.

    Args:
        objective: the loss and data; its model is never changed.
        names: measure names, from :data:`MEASURES`.
        **settings: ``rho``, ``eps``, ``num_samples``, ``seed``, ``target``, ``batch_size``, ...

    Returns:
        ``{name: SharpnessResult}`` in the order asked.

    Raises:
        ValueError: an unknown measure name or setting, or a bad setting value.

    Example:
        >>> data = (torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
        >>> model = nn.Linear(2, 1, bias=False).double()
        >>> out = sharpness(Objective(model, data, loss="mse"), ["worst_l2", "rise"], rho=0.1)
        >>> sorted(out)
        ['rise', 'worst_l2']
    """
    _check_objective(objective)
    if isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in MEASURES]
    if unknown:
        raise ValueError(f"unknown sharpness measure(s) {unknown}; valid names: {list(MEASURES)}")
    known = set().union(*(_setting_names(n) for n in MEASURES))
    bad = sorted(set(settings) - known)
    if bad:
        raise ValueError(f"unknown setting(s) {bad}; valid settings: {sorted(known)}")
    results = {}
    for name in dict.fromkeys(names):
        function, fixed = MEASURES[name]
        mine = _setting_names(name)
        options = {k: v for k, v in settings.items() if k in mine and v is not None}
        results[name] = function(objective, **fixed, **options)
    return results


# ---------------------------------------------------------------- storage
def save_sharpness(
    path: str | os.PathLike,
    results: Mapping[str, SharpnessResult],
    *,
    overwrite: bool = False,
    group: str = "sharpness",
) -> None:
    """Write results into ``/sharpness/<name>`` groups of a landscape HDF5 file.

    Each group's attrs hold ``value``, ``stderr``, every setting, every extra quantity and
    ``extra_names`` (which attrs are extras); ``samples``, if any, is a dataset.

    Args:
        path: the file; created if missing, otherwise added to.
        results: ``{name: SharpnessResult}`` as :func:`sharpness` returns.
        overwrite: replace groups that exist; otherwise they raise before anything is written.
        group: the parent group (``compare/<label>/sharpness`` in a comparison file).

    Raises:
        ValueError: a group exists and ``overwrite`` is false, the file is not a landscape
            file, or a result's settings and extra share a name.

    Example:
        >>> import tempfile
        >>> result = SharpnessResult("rise", 0.5, 0.1, {"rho": 0.25, "seed": 0})
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     save_sharpness(f"{tmp}/s.h5", {"rise": result})
        ...     load_sharpness(f"{tmp}/s.h5")["rise"] == result
        True
    """
    if not overwrite and os.path.exists(path):
        with open_landscape_file(path) as f:
            taken = [n for n in results if f"{group}/{n}" in f]
        if taken:
            raise ValueError(
                f"{os.fspath(path)} already has /{group}/{taken[0]}; "
                "pass overwrite=True (--overwrite) to replace it"
            )
    reserved = {"name", "value", "stderr", "extra_names"}
    for name, result in results.items():
        clash = (set(result.settings) & set(result.extra)) | (
            (set(result.settings) | set(result.extra)) & reserved
        )
        if clash:
            raise ValueError(
                f"{name}: settings and extra share names or use reserved ones: {sorted(clash)}"
            )
    for name, result in results.items():
        attrs = {
            "name": result.name,
            "value": result.value,
            "stderr": result.stderr,
            **result.settings,
            **result.extra,
            "extra_names": list(result.extra),
        }
        arrays = {} if result.samples is None else {"samples": result.samples}
        write_group(path, f"{group}/{name}", arrays=arrays, attrs=attrs, overwrite=overwrite)


def load_sharpness(
    path: str | os.PathLike, *, group: str = "sharpness"
) -> dict[str, SharpnessResult]:
    """Read every ``/<group>/<name>`` group written by :func:`save_sharpness`.

    Returns:
        ``{name: SharpnessResult}`` in the order of :data:`MEASURES`; empty if the file has
        no sharpness results.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a landscape file.
    """
    with open_landscape_file(path) as f:
        names = list(f[group]) if group in f else []
    order = list(MEASURES)
    names.sort(key=lambda n: order.index(n) if n in order else len(order))
    results = {}
    for name in names:
        arrays, attrs = read_group(path, f"{group}/{name}")
        attrs = {k: _decode(v) for k, v in attrs.items()}
        extra_names = attrs.pop("extra_names")
        extra = {k: float(attrs.pop(k)) for k in extra_names}
        result_name, value, stderr = attrs.pop("name"), attrs.pop("value"), attrs.pop("stderr")
        results[name] = SharpnessResult(
            result_name, float(value), float(stderr), attrs, extra, arrays.get("samples")
        )
    return results


def _decode(value: Any) -> Any:
    """An attribute as written: ``encode_attr`` stores None and lists of strings as JSON."""
    if isinstance(value, str) and (value == "null" or value.startswith("[")):
        return json.loads(value)
    return value
