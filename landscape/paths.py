"""Paths between minima: straight lines, mode-connecting curves, loss barriers, model soups.

Two checkpoints ``a`` and ``b`` of one architecture are joined by a curve ``phi(t)``,
``t`` in [0, 1], with ``phi(0) = a`` and ``phi(1) = b`` exactly (the end states
themselves, not a formula that rounds near them):

- ``"line"``: ``(1 - t) a + t b``;
- ``"bezier"``: the quadratic Bezier curve ``(1 - t)^2 a + 2 t (1 - t) theta + t^2 b``;
- ``"polychain"``: the one-bend polygonal chain ``a -> theta -> b`` (``theta`` at
  ``t = 1/2``).

:func:`fit_curve` finds the bend ``theta`` by minimizing the expected loss along the curve,
``E_{t ~ U(0, 1)} L(phi_theta(t))``, with one ``t`` drawn per step (Garipov et al. 2018,
"Loss surfaces, mode connectivity, and fast ensembling of DNNs"; Draxler et al. 2018).
The curve moves the floating-point parameters (and the bend holds one tensor per
parameter); floating buffers such as BatchNorm running statistics move along the straight
line between the ends, or are re-estimated from the data at every point with
``bn_reestimate=True`` (:func:`reestimate_bn`; needed for BatchNorm networks, whose
running statistics at an interior point of a curve belong to neither end).

:func:`evaluate_path` gives the loss and metrics along a curve and the *loss barrier*
(Frankle et al. 2020, "Linear mode connectivity and the lottery ticket hypothesis"):
``max_t [L(t) - ((1 - t) L(0) + t L(1))]`` and the ``t`` where it is reached.
:func:`connect_checkpoints` does the whole study in one call; :func:`model_soup` is the
uniform average of several checkpoints (Wortsman et al. 2022).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from .checks import check_seed
from .data import call_model, split_batch
from .limits import MAX_POINTS, check_limit
from .params import expand_tied, tied_names
from .results import Result
from .results.paths import PathResult

if TYPE_CHECKING:
    from .objective import Objective

State = dict[str, torch.Tensor]
CurveKind = Literal["line", "bezier", "polychain"]
CURVE_KINDS = ("line", "bezier", "polychain")

__all__ = [
    "CURVE_KINDS",
    "Connection",
    "Curve",
    "CurveKind",
    "PathResult",
    "connect_checkpoints",
    "evaluate_path",
    "fit_curve",
    "loss_barrier",
    "model_soup",
    "reestimate_bn",
]


# ---------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class Curve(Result):
    """A curve between two states; compared by value.

    Attributes:
        kind: ``"line"``, ``"bezier"`` or ``"polychain"``.
        start, end: the end states (complete ``state_dict``-like states).
        bend: the control point (Bezier) or the bend (polygonal chain), one tensor per
            floating parameter it moves; ``None`` for a line.
        settings: how it was fitted (steps, learning rate, seed, ...).
    """

    kind: str
    start: State
    end: State
    bend: State | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_kind(self.kind)
        if (self.bend is None) != (self.kind == "line"):
            raise ValueError(
                f"a {self.kind!r} curve needs "
                + ("no bend" if self.kind == "line" else "a bend (one tensor per parameter)")
            )

    def point(self, t: float) -> State:
        """The state at ``t`` in [0, 1]: ``start`` itself at 0, ``end`` itself at 1.

        Example:
            >>> a, b = {"w": torch.tensor([0.0])}, {"w": torch.tensor([2.0])}
            >>> curve = Curve("bezier", a, b, {"w": torch.tensor([3.0])})
            >>> curve.point(0.5)["w"].item(), curve.point(1.0)["w"] is b["w"]
            (2.0, True)
        """
        t = float(t)
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"t must be in [0, 1], got {t}")
        return _point(self.kind, self.start, self.end, self.bend, t)


@dataclass(frozen=True, eq=False)
class Connection(Result):
    """What :func:`connect_checkpoints` found: the straight line, and the fitted curve.

    Attributes:
        line: loss and barrier along the straight line.
        curve: the same along the fitted curve (``None`` when only the line was asked for).
        fitted: the fitted :class:`Curve` (``None`` likewise).
    """

    line: PathResult
    curve: PathResult | None = None
    fitted: Curve | None = None

    @property
    def paths(self) -> dict[str, PathResult]:
        """``{kind: PathResult}`` for the line and the curve."""
        out = {"line": self.line}
        if self.curve is not None:
            out[self.curve.kind] = self.curve
        return out


# ---------------------------------------------------------------- curve points
def _check_kind(kind: str) -> None:
    if kind not in CURVE_KINDS:
        raise ValueError(f"curve kind must be one of {CURVE_KINDS}, got {kind!r}")


def _blend(kind: str, a: torch.Tensor, b: torch.Tensor, bend: torch.Tensor | None, t: float):
    """One tensor of the curve at ``0 < t < 1`` (differentiable in ``bend``)."""
    if kind == "line" or bend is None:
        return torch.lerp(a, b, t)
    if kind == "bezier":
        return (1 - t) ** 2 * a + 2 * t * (1 - t) * bend + t**2 * b
    if t < 0.5:
        return a + (2 * t) * (bend - a)
    return bend + (2 * t - 1) * (b - bend)


def _point(
    kind: str, start: Mapping, end: Mapping, bend: Mapping | None, t: float
) -> dict[str, torch.Tensor]:
    if t == 0.0:
        return dict(start)
    if t == 1.0:
        return dict(end)
    out = {}
    for name, a in start.items():
        if not a.is_floating_point():
            out[name] = a  # integer buffers (num_batches_tracked) stay as at the start
            continue
        b = end[name]
        out[name] = _blend(kind, a, b, None if bend is None else bend.get(name), t)
    return out


# ---------------------------------------------------------------- states
def _as_state(objective: Objective, value: nn.Module | Mapping[str, torch.Tensor], what: str):
    """A complete state on the objective's device and dtypes (names it lacks: base values)."""
    if isinstance(value, nn.Module):
        value = value.state_dict()
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be an nn.Module or a state_dict, got {type(value).__name__}")
    full = objective.full_state(value)
    out = {}
    for name, ref in objective.base_state.items():
        t = full[name]
        if tuple(t.shape) != tuple(ref.shape):
            raise ValueError(
                f"{what}: {name!r} has shape {tuple(t.shape)}, the model's has {tuple(ref.shape)}"
            )
        out[name] = t.detach().to(device=ref.device, dtype=ref.dtype, copy=True)
    return out


def model_soup(
    checkpoints: Sequence[nn.Module | Mapping[str, torch.Tensor]],
) -> dict[str, torch.Tensor]:
    """The uniform average of several checkpoints (a "model soup", Wortsman et al. 2022).

    Floating tensors (parameters and running statistics) are averaged in float64 and cast
    back to their dtype; integer buffers (``num_batches_tracked``) are taken from the first.

    Args:
        checkpoints: two or more models or state_dicts with the same names and shapes.

    Returns:
        A state_dict; load it with ``model.load_state_dict(soup)``.

    Raises:
        ValueError: fewer than two checkpoints, or names or shapes that differ.

    Example:
        >>> soup = model_soup([{"w": torch.tensor([1.0])}, {"w": torch.tensor([3.0])}])
        >>> soup["w"].tolist()
        [2.0]
    """
    states = [c.state_dict() if isinstance(c, nn.Module) else dict(c) for c in checkpoints]
    if len(states) < 2:
        raise ValueError(f"a soup needs at least two checkpoints, got {len(states)}")
    first = states[0]
    for i, state in enumerate(states[1:], start=1):
        if set(state) != set(first):
            raise ValueError(
                f"checkpoint {i} differs from checkpoint 0 in names: only in {i} "
                f"{sorted(set(state) - set(first))[:5]}, only in 0 "
                f"{sorted(set(first) - set(state))[:5]}"
            )
        for name, t in state.items():
            if tuple(t.shape) != tuple(first[name].shape):
                raise ValueError(
                    f"checkpoint {i}: {name!r} has shape {tuple(t.shape)}, checkpoint 0 has "
                    f"{tuple(first[name].shape)}"
                )
    soup = {}
    for name, t in first.items():
        if t.is_floating_point():
            total = sum(s[name].detach().to(device=t.device, dtype=torch.float64) for s in states)
            soup[name] = (total / len(states)).to(t.dtype)
        else:
            soup[name] = t.detach().clone()
    return soup


# ---------------------------------------------------------------- BatchNorm
def _norm_layers(model: nn.Module) -> list[tuple[str, nn.modules.batchnorm._BatchNorm]]:
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
    ]


class _BatchNormEstimator:
    """A private copy of the objective's model that recomputes running statistics."""

    def __init__(self, objective: Objective):
        self.objective = objective
        self.model = copy.deepcopy(objective.model).requires_grad_(False)
        self.tied = tied_names(self.model)
        self.layers = _norm_layers(self.model)
        if not self.layers:
            raise ValueError(
                "bn_reestimate=True needs BatchNorm layers that track running statistics; "
                "this model has none"
            )

    @torch.no_grad()
    def __call__(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        model, objective = self.model, self.objective
        model.load_state_dict(expand_tied(objective.full_state(state), self.tied))
        model.eval()
        stats: dict[str, list] = {}
        hooks = []
        for name, layer in self.layers:
            layer.train()  # batch statistics, as in training; nothing else in train mode
            stats[name] = [0, None, None]  # count, mean, M2 (Chan et al.), in float64
            hooks.append(layer.register_forward_pre_hook(self._hook(stats[name])))
        try:
            for batch in objective.batches():
                if objective.batch_loss is not None:
                    objective.batch_loss(model, batch)
                else:
                    call_model(model, split_batch(batch, objective.label_keys)[0])
        finally:
            for hook in hooks:
                hook.remove()
        out = dict(state)
        for name, layer in self.layers:
            count, mean, m2 = stats[name]
            if count < 2:
                raise ValueError(
                    f"re-estimating {name or 'the BatchNorm layer'} needs at least 2 values per "
                    f"channel over the data, got {count}"
                )
            prefix = f"{name}." if name else ""
            ref_mean, ref_var = layer.running_mean, layer.running_var
            out[prefix + "running_mean"] = mean.to(ref_mean)
            out[prefix + "running_var"] = (m2 / (count - 1)).to(ref_var)
        return out

    @staticmethod
    def _hook(acc: list):
        def hook(module: nn.Module, inputs: tuple) -> None:
            x = inputs[0].detach().double()
            dims = [d for d in range(x.dim()) if d != 1]
            n = x.numel() // x.shape[1]
            mean = x.mean(dim=dims)
            m2 = ((x - mean.view(1, -1, *([1] * (x.dim() - 2)))) ** 2).sum(dim=dims)
            count, old_mean, old_m2 = acc
            if count == 0:
                acc[:] = [n, mean, m2]
                return
            total = count + n
            delta = mean - old_mean
            acc[:] = [
                total,
                old_mean + delta * (n / total),
                old_m2 + m2 + delta**2 * (count * n / total),
            ]

        return hook


def reestimate_bn(
    objective: Objective, state: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``state`` with every BatchNorm layer's running statistics recomputed on the data.

    The model (a private copy; the caller's is not touched) runs over the objective's data
    with the weights of ``state``, in eval mode except for the BatchNorm layers, which
    normalize with batch statistics as in training. Each layer's ``running_mean`` becomes
    the mean of its inputs over the whole data set and ``running_var`` their unbiased
    variance, per channel, accumulated in float64 with every example weighing the same
    whatever the batch sizes (``torch.optim.swa_utils.update_bn`` weighs batches equally).

    Args:
        objective: the model and data.
        state: the weights (a complete state or a part; missing names: the base state).

    Returns:
        A new state: ``state`` with the running statistics replaced.

    Raises:
        ValueError: the model has no BatchNorm layer with running statistics.
    """
    return _BatchNormEstimator(objective)(state)


# ---------------------------------------------------------------- barrier
def loss_barrier(t: Any, loss: Any) -> tuple[float, float]:
    """The loss barrier of a path and where it is: ``max_t [loss(t) - ((1 - t) loss(0) +
    t loss(1))]`` and its ``t`` (Frankle et al. 2020).

    Args:
        t: increasing values from 0 to 1 (both included).
        loss: the loss at each ``t``.

    Returns:
        ``(barrier, barrier_t)``; NaN values are skipped (all NaN: ``(nan, nan)``).

    Raises:
        ValueError: ``t`` does not run from 0 to 1, or the lengths differ.

    Example:
        >>> loss_barrier([0.0, 0.5, 1.0], [1.0, 4.0, 3.0])
        (2.0, 0.5)
    """
    t = np.asarray(t, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    if t.ndim != 1 or loss.shape != t.shape or len(t) < 2:
        raise ValueError(
            f"expected t and loss of one equal length >= 2, got {t.shape}, {loss.shape}"
        )
    if t[0] != 0.0 or t[-1] != 1.0 or np.any(np.diff(t) <= 0):
        raise ValueError(f"t must increase from 0 to 1, got {t[0]} .. {t[-1]}")
    excess = loss - ((1 - t) * loss[0] + t * loss[-1])
    if not np.isfinite(excess).any():
        return float("nan"), float("nan")
    i = int(np.nanargmax(excess))  # the ends have excess 0, so the barrier is >= 0
    return float(excess[i]), float(t[i])


# ---------------------------------------------------------------- fitting
def fit_curve(
    objective: Objective,
    start: nn.Module | Mapping[str, torch.Tensor],
    end: nn.Module | Mapping[str, torch.Tensor],
    *,
    kind: CurveKind = "bezier",
    num_steps: int = 500,
    lr: float = 0.01,
    optimizer: Literal["adam", "sgd"] = "adam",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    seed: int = 0,
) -> Curve:
    """Fit a curve between two checkpoints by minimizing the expected loss along it.

    The bend starts at the midpoint ``(a + b) / 2`` (the curve is then the straight line)
    and is moved by ``num_steps`` optimizer steps; step ``s`` draws ``t ~ U(0, 1)`` from a
    generator seeded with ``seed`` and takes the gradient of the mean loss at
    ``phi_theta(t)`` on the objective's next batch (the batches are cycled in their fixed
    order), as Garipov et al. (2018) do. The loss is computed through
    ``objective.batch_sums``, in the objective's mode: for a BatchNorm network, fit with an
    Objective made with ``train_mode=True`` (batch statistics, as in the paper) and
    evaluate with ``bn_reestimate=True``. The ends never move.

    Args:
        objective: the model and the (training) data.
        start, end: the two checkpoints (models or state_dicts of the objective's model).
        kind: ``"bezier"`` or ``"polychain"`` (``"line"`` returns the line unfitted).
        num_steps: optimizer steps.
        lr, optimizer, momentum, weight_decay: the optimizer (``momentum`` for SGD only).
        seed: seed of the ``t`` draws.

    Returns:
        The fitted :class:`Curve`; ``settings`` holds every option and the mean training
        loss over the last tenth of the steps (``final_loss``).

    Raises:
        ValueError: an unknown kind or optimizer, ``num_steps < 0``, ``lr <= 0``, or
            checkpoints that do not fit the model.
    """
    _check_kind(kind)
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 0:
        raise ValueError(f"num_steps must be a non-negative integer, got {num_steps!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    a = _as_state(objective, start, "start")
    b = _as_state(objective, end, "end")
    settings: dict[str, Any] = {
        "num_steps": num_steps, "lr": float(lr), "optimizer": optimizer,
        "momentum": float(momentum), "weight_decay": float(weight_decay), "seed": int(seed),
        "train_mode": bool(objective.train_mode),
    }  # fmt: skip
    if kind == "line":
        return Curve("line", a, b, None, settings)
    names = [n for n, p in objective.model.named_parameters() if p.is_floating_point() and n in a]
    bend = {n: torch.lerp(a[n], b[n], 0.5).requires_grad_(True) for n in names}
    params = list(bend.values())
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(check_seed(seed))
    batches = itertools.cycle(list(objective.batches()))
    recent: list[float] = []
    for step in range(num_steps):
        t = float(torch.rand((), generator=generator, dtype=torch.float64))
        t = min(max(t, 1e-12), 1 - 1e-12)  # an interior point: the bend has a gradient
        state = _point(kind, a, b, bend, t)
        sums, count = objective.batch_sums(
            objective.full_state(state), next(batches), with_metrics=False
        )
        loss = sums["loss"] / count
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= num_steps - max(1, num_steps // 10):
            recent.append(float(loss.detach()))
    settings["final_loss"] = float(np.mean(recent)) if recent else float("nan")
    fitted = {n: p.detach().clone() for n, p in bend.items()}
    return Curve(kind, a, b, fitted, settings)


# ---------------------------------------------------------------- evaluation
def _grid(t: Any) -> np.ndarray:
    if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
        if t < 2:
            raise ValueError(f"a path needs at least 2 points, got {t}")
        check_limit("path points", int(t), MAX_POINTS)
        return np.linspace(0.0, 1.0, int(t))
    grid = np.asarray(t, dtype=np.float64)
    if grid.ndim != 1 or len(grid) < 2 or grid[0] != 0.0 or grid[-1] != 1.0:
        raise ValueError(f"t must be a count or values from 0 to 1 (both included), got {t!r}")
    if np.any(np.diff(grid) <= 0):
        raise ValueError("t must be increasing")
    return grid


def evaluate_path(
    objective: Objective,
    curve: Curve,
    t: Any = 25,
    *,
    bn_reestimate: bool = False,
) -> PathResult:
    """Loss and metrics along a curve, and its loss barrier.

    Args:
        objective: the model and the evaluation data.
        curve: from :func:`fit_curve` (or ``Curve("line", a, b)``).
        t: a number of evenly spaced points, or increasing values from 0 to 1.
        bn_reestimate: recompute the BatchNorm running statistics at every point, the ends
            included (:func:`reestimate_bn`).

    Returns:
        A :class:`PathResult` (``settings``: ``bn_reestimate`` and the curve's settings).

    Example:
        >>> from landscape import Objective
        >>> model = nn.Linear(2, 1)
        >>> objective = Objective(model, (torch.ones(4, 2), torch.zeros(4, 1)), loss="mse")
        >>> zero = {n: torch.zeros_like(p) for n, p in model.state_dict().items()}
        >>> path = evaluate_path(objective, Curve("line", model.state_dict(), zero), 5)
        >>> float(path.loss[-1]), path.barrier
        (0.0, 0.0)
    """
    grid = _grid(t)
    estimator = _BatchNormEstimator(objective) if bn_reestimate else None
    values: dict[str, list[float]] = {name: [] for name in objective.names}
    for ti in grid:
        state = curve.point(float(ti))
        if estimator is not None:
            state = estimator(state)
        for name, value in objective(state).items():
            values[name].append(value)
    metrics = {name: np.asarray(v, dtype=np.float64) for name, v in values.items()}
    barrier, barrier_t = loss_barrier(grid, metrics["loss"])
    settings = {**curve.settings, "bn_reestimate": bool(bn_reestimate)}
    return PathResult(curve.kind, grid, metrics, barrier, barrier_t, settings)


def connect_checkpoints(
    objective: Objective,
    start: nn.Module | Mapping[str, torch.Tensor],
    end: nn.Module | Mapping[str, torch.Tensor],
    *,
    curve: CurveKind = "bezier",
    t: Any = 25,
    bn_reestimate: bool = False,
    fit_objective: Objective | None = None,
    **fit_options: Any,
) -> Connection:
    """The straight line between two checkpoints and, unless ``curve="line"``, a fitted
    curve: loss and metrics along both and their barriers.

    Args:
        objective: model and evaluation data.
        start, end: the checkpoints.
        curve: ``"bezier"``, ``"polychain"`` or ``"line"`` (the line only).
        t, bn_reestimate: as in :func:`evaluate_path`.
        fit_objective: the objective the curve is fitted on (default ``objective``), e.g.
            one in train mode for a BatchNorm network.
        **fit_options: options of :func:`fit_curve` (``num_steps``, ``lr``, ``seed``, ...).

    Returns:
        A :class:`Connection`. With a fitted curve, each path's ``settings`` also hold
        ``plane_coords`` (float64 ``(3, 2)``: a, b and the bend in their plane, see
        :func:`landscape.planes.checkpoint_plane`) and ``xy`` (the path's points in that
        plane), for drawing the curve over a surface of the plane.
    """
    _check_kind(curve)
    line = Curve(
        "line", _as_state(objective, start, "start"), _as_state(objective, end, "end"), None, {}
    )
    line_path = evaluate_path(objective, line, t, bn_reestimate=bn_reestimate)
    if curve == "line":
        return Connection(line_path)
    fitted = fit_curve(fit_objective or objective, start, end, kind=curve, **fit_options)
    curve_path = evaluate_path(objective, fitted, t, bn_reestimate=bn_reestimate)
    coords = _plane_coords(objective.model, fitted)
    if coords is not None:  # both paths drawn in the plane of (a, b, bend)
        line_path, curve_path = (
            dataclasses.replace(
                p,
                settings={
                    **p.settings,
                    "plane_coords": coords,
                    "xy": _plane_xy(p.kind, coords, p.t),
                },
            )
            for p in (line_path, curve_path)
        )
    return Connection(line_path, curve_path, fitted)


def _plane_coords(model: nn.Module, curve: Curve) -> np.ndarray | None:
    """Coordinates ``(3, 2)`` of ``a``, ``b`` and the bend in their plane (None when the
    three are on one line, as for an unfitted curve)."""
    from .planes import checkpoint_plane

    bend = {**curve.start, **(curve.bend or {})}
    try:
        return checkpoint_plane(model, [curve.start, curve.end, bend], dir_type="weights").coords
    except ValueError:
        return None


def _plane_xy(kind: str, coords: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The points of a curve at ``t`` in the plane of (a, b, bend), float64 ``(n, 2)``: the
    curve is an affine combination of the three, and so is its projection."""
    a, b, bend = coords
    t = np.asarray(t, dtype=np.float64)[:, None]
    if kind == "line":
        return (1 - t) * a + t * b
    if kind == "bezier":
        return (1 - t) ** 2 * a + 2 * t * (1 - t) * bend + t**2 * b
    first = a + 2 * t * (bend - a)
    second = bend + (2 * t - 1) * (b - bend)
    return np.where(t < 0.5, first, second)
