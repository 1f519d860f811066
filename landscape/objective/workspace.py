"""The private module an :class:`~landscape.objective.Objective` evaluates points with,
and how a point is written into it.

The private module is the model's module tree with tensors of its own that point at the
tensors of whatever state is evaluated (``tensor.data = ...``): no values are copied. A
point of :meth:`~landscape.objective.Objective.evaluate_points` is written into a private
buffer for each tensor its directions move (the perturbed copy); every other tensor points
at the base state. So the extra memory of a surface is the directions and that copy.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..params import end_index, lerp_coefficient

State = Mapping[str, torch.Tensor]

_FLAT_LIMIT = 2**16  # moving tensors of one dtype up to this many elements are concatenated
_PIECE = 2**22  # elements per piece of a larger tensor: the scratch buffer's size at most


_ROW_LIMIT = 2**22  # moving elements up to which a plane keeps its row (one more copy)


class _Piece:
    """A 1-D stretch of the moving tensors of one device and dtype: where a point is
    written (``out``, a view into a tensor of the private module), its origin values (the
    base, and the end of an interpolation), each direction's values (None where the
    direction does not move it), and the row kept for a plane (``row``, holding the
    origin plus every term but the last for the coefficients ``row_key``)."""

    __slots__ = ("base", "buf", "directions", "end", "key", "out", "row", "row_key")

    def __init__(self, out, base, end, directions):
        self.out, self.base, self.end, self.directions = out, base, end, directions
        self.key = (out.device, out.dtype)
        self.buf: torch.Tensor | None = None  # its stretch of the plan's scratch buffer
        self.row: torch.Tensor | None = None
        self.row_key: tuple | None = None


class Workspace:
    """What an Objective shares with those made from it by :meth:`Objective.at`: the
    private module (made on first use), the buffers points are written into, and the
    choices made for the model (points per pass, whether ``vmap`` works).

    The private module is the model's module tree with tensors of its own that *point at*
    the tensors of whatever state is evaluated (``tensor.data = ...``): no values are
    copied. A point of :meth:`Objective.evaluate_points` is written into one private
    buffer per moving tensor; the others point at the base state.
    """

    def __init__(self, model: nn.Module, train_mode: bool):
        self.model = model
        self.train_mode = train_mode
        self.module: nn.Module | None = None
        self.tensors: dict[str, torch.Tensor] = {}  # the private module's, one per tied group
        self.bound: dict[str, torch.Tensor] = {}  # name -> the tensor it points at
        self.vmap_ok = True
        self.plan: tuple[tuple, list, Any] | None = None  # last one-point plan: key, tensors, plan
        self.auto_points: int | None = None
        self.entered = False
        # whether the model's passes draw random numbers: known in train mode (Dropout),
        # found out otherwise (see Objective._seeded_if_drawing)
        self.draws = train_mode
        self.check_targets = False  # the targets are checked on the first outputs seen

    def ensure(self) -> None:
        """Make the private module: the model's modules copied, its tensors not (each
        points at the model's until :meth:`bind` points it elsewhere)."""
        if self.module is not None:
            return
        memo: dict[int, Any] = {}
        for t in self.model.state_dict(keep_vars=True).values():
            if isinstance(t, nn.Parameter):
                memo.setdefault(id(t), nn.Parameter(t.detach(), requires_grad=False))
            else:
                memo.setdefault(id(t), t.detach())
        for b in self.model.buffers():  # non-persistent ones: train mode may write them
            memo.setdefault(id(b), b.detach().clone() if self.train_mode else b.detach())
        self.module = copy.deepcopy(self.model, memo).train(self.train_mode)
        seen: set[int] = set()
        for name, t in self.module.state_dict(keep_vars=True).items():
            if id(t) not in seen:  # a tied tensor is pointed once, through its first name
                seen.add(id(t))
                self.tensors[name] = t

    def bind(self, state: State) -> None:
        """Point the private module's tensors at ``state``'s (a complete state; tensors
        of another dtype or device are cast first)."""
        for name, t in self.tensors.items():
            target = state[name]
            if self.bound.get(name) is target:
                continue
            if target.dtype != t.dtype or target.device != t.device:
                target = target.to(device=t.device, dtype=t.dtype)
            t.data = target
            self.bound[name] = state[name]


class PointPlan:
    """How :meth:`Objective.evaluate_points` writes its points one at a time.

    Only the tensors some direction moves (and, in train mode, the buffers the model
    writes) get a private buffer, the perturbed copy; every other tensor of the private
    module points at the base state. Each point is formed as
    :func:`landscape.params.point_state` forms it (``origin + c_j d_j``, a product and a
    sum per direction, zero coefficients skipped), so all coordinates 0 give ``base``
    exactly and an interpolation coordinate 1 its end exactly.

    Memory: the perturbed copy, a scratch buffer of at most ``2**22`` elements per dtype,
    and on a plane whose moving tensors total at most ``2**22`` elements the row (a copy
    of them: a point of a row is then one product and one sum instead of two each); the
    base, the directions and the end are read where they are. Moving tensors of one dtype
    that total at most ``2**16`` elements are concatenated instead (copies of the base, the
    directions and the end: a few copies of a small model), so that a point of a small
    model is a few vector operations whatever its number of tensors.
    """

    def __init__(
        self,
        base: State,
        directions: list[dict[str, torch.Tensor]],
        ends: list[dict[str, torch.Tensor] | None] | None,
        work: Workspace,
    ):
        self.j_end = end_index(ends, len(directions))
        end = {} if self.j_end is None else ends[self.j_end]  # type: ignore[index]
        self.order = list(range(len(directions)))
        if self.j_end is not None:
            self.order = [self.j_end, *(j for j in self.order if j != self.j_end)]
        moved = {n for d in directions for n in d}
        # in train mode the model writes its buffers: each point gets them afresh
        written = {n for n, t in work.tensors.items() if work.train_mode and not _is_param(t)}
        self.bindings = dict(base)
        self.resets = {n: (base[n].clone(), base[n]) for n in written if not _is_float(base[n])}
        self.bindings.update({n: copy for n, (copy, _) in self.resets.items()})
        groups: dict[tuple[torch.device, torch.dtype], list[str]] = {}
        for name in work.tensors:
            if _is_float(base[name]) and (name in moved or name in written):
                groups.setdefault((base[name].device, base[name].dtype), []).append(name)
        self.pieces: list[_Piece] = []
        for names in groups.values():
            if sum(base[n].numel() for n in names) <= _FLAT_LIMIT:
                self._add_flat(names, base, directions, end)
            else:
                for name in names:
                    self._add_tensor(name, base, directions, end)
        sizes: dict[tuple[torch.device, torch.dtype], int] = {}
        for piece in self.pieces:
            sizes[piece.key] = max(sizes.get(piece.key, 0), piece.out.numel())
        self.scratch = {k: torch.empty(n, device=k[0], dtype=k[1]) for k, n in sizes.items()}
        for piece in self.pieces:
            piece.buf = self.scratch[piece.key][: piece.out.numel()]
        planar = [p for p in self.pieces if sum(d is not None for d in p.directions) > 1]
        if sum(p.out.numel() for p in planar) <= _ROW_LIMIT:
            for piece in planar:
                piece.row = torch.empty_like(piece.out)

    def _add_flat(self, names: list[str], base: State, directions: list, end: State) -> None:
        """One piece for ``names``: concatenated copies, zero where a direction is absent."""

        def cat(state: State, fill: State | None) -> torch.Tensor:
            parts = []
            for n in names:
                if n in state:
                    parts.append(state[n].reshape(-1))
                else:
                    parts.append(
                        fill[n].reshape(-1) if fill else base[n].new_zeros(base[n].numel())
                    )
            return torch.cat(parts)

        out = cat(base, None)
        offset = 0
        for name in names:
            size = base[name].numel()
            self.bindings[name] = out[offset : offset + size].view(base[name].shape)
            offset += size
        flat_base = out.clone()
        flat_end = cat(end, base) if end else flat_base
        flats = [cat(d, None) if any(n in d for n in names) else None for d in directions]
        self.pieces.append(_Piece(out, flat_base, flat_end, flats))

    def _add_tensor(self, name: str, base: State, directions: list, end: State) -> None:
        """The pieces of one tensor: its own perturbed copy, the rest read in place."""
        t = base[name]
        out = torch.empty(t.shape, device=t.device, dtype=t.dtype)
        self.bindings[name] = out
        vectors = [out, t, end.get(name, t), *(d.get(name) for d in directions)]
        vectors = [None if v is None else v.reshape(-1) for v in vectors]
        for lo in range(0, t.numel(), _PIECE):
            part = [None if v is None else v[lo : lo + _PIECE] for v in vectors]
            self.pieces.append(_Piece(part[0], part[1], part[2], part[3:]))

    def write(self, point: list[float]) -> None:
        """Write the point with coordinates ``point`` into the perturbed copy.

        On a plane, the row (the origin plus the first direction's term) is kept while
        the points of a row follow one another, so such a point costs one product and one
        sum; it is formed from the base again whenever its coefficient changes, so there
        is no drift, and a point has the same bits whichever points came before it.
        """
        coefs, from_end = list(point), False
        if self.j_end is not None:
            from_end, coefs[self.j_end] = lerp_coefficient(point[self.j_end])
        active = [(coefs[j], j) for j in self.order if coefs[j] != 0]
        for piece in self.pieces:
            origin = piece.end if from_end else piece.base
            terms = [(c, j) for c, j in active if piece.directions[j] is not None]
            if not terms:
                piece.out.copy_(origin)
                continue
            buf = piece.buf
            if len(terms) > 1 and piece.row is not None:
                key = (from_end, *terms[:-1])
                if piece.row_key != key:
                    piece.row_key = None  # not a row until it is written whole
                    _axpy_into(piece.row, origin, terms[:-1], piece.directions, buf)
                    piece.row_key = key
                origin, terms = piece.row, terms[-1:]
            _axpy_into(piece.out, origin, terms, piece.directions, buf)
        for copy_, source in self.resets.values():
            copy_.copy_(source)


def _axpy_into(
    out: torch.Tensor,
    origin: torch.Tensor,
    terms: list[tuple[float, int]],
    directions: list[torch.Tensor | None],
    buf: torch.Tensor,
) -> None:
    """``out = origin + sum(c * directions[j])`` with the roundings of
    :func:`landscape.params.axpy` (each product rounded, then added in order): a fused
    multiply-add would round once and differ from the reference point in the last bit."""
    for i, (c, j) in enumerate(terms):
        torch.mul(directions[j], c, out=buf)
        if i == 0:
            torch.add(origin, buf, out=out)
        else:
            out.add_(buf)


def _is_param(t: torch.Tensor) -> bool:
    return isinstance(t, nn.Parameter)


def _is_float(t: torch.Tensor) -> bool:
    return t.is_floating_point()
