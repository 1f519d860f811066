"""The plane through three checkpoints (Garipov et al. 2018): :func:`checkpoint_plane`.

Its origin is the first checkpoint, its basis orthonormal (so distances in the plane are
distances in parameter space), and it knows the three points' coordinates; a surface over
it shows the three models, each at its own loss.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .. import options
from ..checks import check_choice, check_state
from ..params import merge_tied, tied_names
from ..results import Result
from .core import Directions, State

__all__ = ["CheckpointPlane", "checkpoint_plane"]


@dataclass(frozen=True, eq=False)
class CheckpointPlane(Result):
    """The plane through three checkpoints; compared by value.

    Attributes:
        directions: orthonormal ``x`` (from the first point towards the second) and ``y``
            (in the plane, orthogonal to ``x``), kind ``"checkpoints"``.
        origin: the first checkpoint's complete state: evaluate a surface around it, e.g.
            ``compute_surface(Objective(model, data).at(plane.origin), plane.directions,
            x, y)``.
        coords: float64 ``(3, 2)``: the three points' coordinates, ``(0, 0)``,
            ``(|b - a|, 0)`` and ``(<c - a, x>, <c - a, y>)``.
        settings: ``dir_type`` (the one used, also when chosen by default), the
            coordinates, and ``buffers="kept at a"`` for ``"weights"`` on a model with
            floating buffers.
    """

    directions: Directions
    origin: State
    coords: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)

    def project(self, states: Sequence[nn.Module | Mapping[str, torch.Tensor]]) -> np.ndarray:
        """Coordinates ``(<s - origin, x>, <s - origin, y>)`` of states, float64 ``(n, 2)``
        (the closest point of the plane, the basis being orthonormal)."""
        names = list(self.directions.x)
        assert self.directions.y is not None  # a checkpoint plane has two directions
        basis = [_flat(self.directions.x, names), _flat(self.directions.y, names)]
        centre = _flat(self.origin, names)
        rows = []
        for s in states:
            s = s.state_dict() if isinstance(s, nn.Module) else s
            delta = _flat(s, names) - centre
            rows.append([float(delta @ basis[0]), float(delta @ basis[1])])
        return np.asarray(rows, dtype=np.float64).reshape(-1, 2)


def _flat(state: Mapping[str, torch.Tensor], names: Sequence[str]) -> torch.Tensor:
    return torch.cat([state[n].detach().reshape(-1).double().cpu() for n in names])


def checkpoint_plane(
    model: nn.Module,
    checkpoints: Sequence[nn.Module | Mapping[str, torch.Tensor]],
    *,
    dir_type: Literal["weights", "states"] | None = None,
) -> CheckpointPlane:
    """The plane through three checkpoints ``[a, b, c]`` (Garipov et al. 2018).

    The basis is found in float64: ``x = (b - a) / |b - a|``, ``y`` the part of ``c - a``
    orthogonal to ``x``, normalized; the directions are then cast to the model's dtypes.

    Args:
        model: the architecture (its parameter names say what ``"weights"`` are).
        checkpoints: three models or state_dicts ``[a, b, c]``.
        dir_type: ``"weights"`` (parameters; buffers stay as in ``a``, so ``b`` and ``c``
            are evaluated with ``a``'s BatchNorm statistics) or ``"states"`` (floating
            buffers too, e.g. BatchNorm running statistics: each checkpoint at its own
            loss). ``None`` (the default, 0.3) means ``"states"`` when the model has
            floating buffers and every checkpoint holds them, ``"weights"`` otherwise;
            the choice is ``settings["dir_type"]``, recorded in a surface's file and
            named in its axis labels.

    Returns:
        A :class:`CheckpointPlane`.

    Raises:
        ValueError: not three checkpoints, names or shapes that differ from the model's,
            or three points on one line (or two equal).

    Example:
        >>> model = nn.Linear(1, 1, bias=False)
        >>> a, b, c = ({"weight": torch.tensor([[v]])} for v in (0.0, 3.0, 1.0))
        >>> checkpoint_plane(model, [a, b, c])  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ValueError: the three checkpoints lie on one line
    """
    if dir_type is not None:
        dir_type = check_choice(dir_type, options.DirType, "dir_type")
    if len(checkpoints) != 3:
        raise ValueError(f"expected three checkpoints [a, b, c], got {len(checkpoints)}")
    reference = model.state_dict()
    tied = tied_names(model)  # a tied tensor counts once, under its first name
    states: list[State] = []
    for i, given in enumerate(checkpoints):
        state = dict(given.state_dict() if isinstance(given, nn.Module) else given)
        check_state(state, reference, name=f"checkpoint {i}", missing=False)
        states.append(merge_tied(state, tied))
    buffers = _floating_buffers(model, reference, tied)
    if dir_type is None:
        dir_type = _default_dir_type(buffers, states)
    if dir_type == "weights":
        candidates = [n for n, p in model.named_parameters() if p.is_floating_point()]
    else:
        candidates = [n for n, t in reference.items() if t.is_floating_point() and n not in tied]
    for i, state in enumerate(states):
        check_state(state, {n: reference[n] for n in candidates}, name=f"checkpoint {i}",
                    unexpected=False, hint="; give complete state_dicts")  # fmt: skip
    a, b, c = (_flat(s, candidates) for s in states)
    ab, ac = b - a, c - a
    length = float(torch.linalg.vector_norm(ab))
    if length == 0.0:
        raise ValueError("the first two checkpoints are equal; a plane needs three distinct points")
    u = ab / length
    along = float(ac @ u)
    w = ac - along * u
    height = float(torch.linalg.vector_norm(w))
    if height <= 1e-12 * max(float(torch.linalg.vector_norm(ac)), length):
        raise ValueError("the three checkpoints lie on one line; a plane needs three that do not")
    v = w / height
    like = {n: reference[n] for n in candidates}
    x = _unflat(u, like, candidates)
    y = _unflat(v, like, candidates)
    coords = np.array([[0.0, 0.0], [length, 0.0], [along, height]])
    settings: dict[str, Any] = {"dir_type": dir_type, "norm": "none", "coords": coords.tolist()}
    if dir_type == "weights" and buffers:  # said in the axis labels of its surfaces
        settings["buffers"] = "kept at a"
    directions = Directions(x, y, kind="checkpoints", settings=settings)
    origin = {n: t.detach().clone() for n, t in states[0].items()}
    for name, t in reference.items():  # a partial state_dict: the model's values
        if name not in tied:
            origin.setdefault(name, t.detach().clone())
    return CheckpointPlane(directions, origin, coords, dict(settings))


def _floating_buffers(
    model: nn.Module, reference: Mapping[str, torch.Tensor], tied: Mapping[str, str]
) -> list[str]:
    """The names of the model's floating buffers (BatchNorm running statistics, ...)."""
    skip = {n for n, _ in model.named_parameters()} | set(tied)
    return [n for n, t in reference.items() if t.is_floating_point() and n not in skip]


def _default_dir_type(
    buffers: Sequence[str], states: Sequence[Mapping[str, torch.Tensor]]
) -> Literal["weights", "states"]:
    """``"states"`` when the model has floating buffers and every checkpoint holds them,
    else ``"weights"`` (with a warning when a checkpoint lacks them)."""
    if not buffers:
        return "weights"
    if all(n in s for s in states for n in buffers):
        return "states"
    warnings.warn(
        f"the model has floating buffers ({buffers[0]!r}, ...) that a checkpoint lacks: the "
        "plane moves the weights only and every point keeps the first checkpoint's buffers; "
        "give complete state_dicts for dir_type='states'",
        RuntimeWarning,
        stacklevel=3,
    )
    return "weights"


def _unflat(vector: torch.Tensor, like: Mapping[str, torch.Tensor], names: Sequence[str]):
    out, offset = {}, 0
    for name in names:
        ref = like[name]
        part = vector[offset : offset + ref.numel()].reshape(ref.shape)
        out[name] = part.to(device=ref.device, dtype=ref.dtype)
        offset += ref.numel()
    return out
