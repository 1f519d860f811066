"""Curves between two checkpoints of one architecture, and the results of a path study.

Two checkpoints ``a`` and ``b`` of one architecture are joined by a curve ``phi(t)``,
``t`` in [0, 1], with ``phi(0) = a`` and ``phi(1) = b`` exactly (the end states
themselves, not a formula that rounds near them):

- ``"line"``: ``(1 - t) a + t b``;
- ``"bezier"``: the quadratic Bezier curve ``(1 - t)^2 a + 2 t (1 - t) theta + t^2 b``;
- ``"polychain"``: the one-bend polygonal chain ``a -> theta -> b`` (``theta`` at
  ``t = 1/2``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from ..checks import check_state
from ..results import Result
from ..results.paths import PathResult

if TYPE_CHECKING:
    from ..alignment import Alignment
    from ..objective import Objective

__all__ = ["CURVE_KINDS", "Connection", "Curve", "CurveKind", "PathResult"]


State = dict[str, torch.Tensor]
CurveKind = Literal["line", "bezier", "polychain"]
CURVE_KINDS = ("line", "bezier", "polychain")


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
        unaligned: with ``align=``, the straight line between the checkpoints as given, of
            kind ``"unaligned"`` (its ``barrier`` is the barrier before alignment; ``line``
            is after it).
        alignment: with ``align=``, the :class:`landscape.alignment.Alignment` of the end.
    """

    line: PathResult
    curve: PathResult | None = None
    fitted: Curve | None = None
    unaligned: PathResult | None = None
    alignment: Alignment | None = None

    @property
    def paths(self) -> dict[str, PathResult]:
        """``{kind: PathResult}`` for the line, the curve and, with ``align=``, the line
        before alignment (``"unaligned"``): what :func:`landscape.storage.paths.save_paths`
        stores and :func:`landscape.plotting.plot_paths` draws on one figure."""
        out = {"line": self.line}
        if self.curve is not None:
            out[self.curve.kind] = self.curve
        if self.unaligned is not None:
            out[self.unaligned.kind] = self.unaligned
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
        raise TypeError(
            f"expected an nn.Module or a state_dict for {what}, got {type(value).__name__}"
        )
    check_state(value, objective.base_state, name=what, missing=False, unexpected=False)
    full = objective.full_state(value)
    out = {}
    for name, ref in objective.base_state.items():
        out[name] = full[name].detach().to(device=ref.device, dtype=ref.dtype, copy=True)
    return out
