"""Seeded Gaussian directions drawn and normalized one tensor at a time, in pieces.

A stored random direction is drawn on the CPU in float64 from one generator, tensor after
tensor in state order, normalized in float32 (or the tensor's dtype, if wider) and kept in
the tensor's dtype. This module does it with the least memory: each tensor is drafted in
its working dtype (the tensor itself for a float32 model) and filled from float64 draws
of at most ``_PIECE`` entries, normalized in place and cast; nothing is drawn or allocated
for a tensor that is not selected. The values are those of one
``torch.randn(shape, dtype=torch.float64)`` per tensor cast and normalized (as 0.2 drew
them), bit for bit: torch's CPU normal sampler fills a tensor 16 entries at a time, so a
draw in pieces whose sizes are multiples of 16 (the last one at least 16) gives the same
numbers and leaves the generator in the same state (checked by
``tests/directions/test_drawing.py::test_drawing_in_pieces_equals_one_draw``).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .. import shards

_PIECE = 2**18  # float64 entries drawn or read at a time (2 MiB); a multiple of 16
_BLOCK = 16  # torch's CPU normal sampler works in blocks of 16 entries


def pieces(numel: int, piece: int | None = None) -> Iterator[tuple[int, int]]:
    """``(lo, hi)`` bounds of the draws for ``numel`` entries: ``piece`` at a time, a last
    piece shorter than 16 merged into the one before (``piece`` defaults to ``_PIECE``).

    Example:
        >>> list(pieces(70, 32)), list(pieces(90, 32))
        ([(0, 32), (32, 70)], [(0, 32), (32, 64), (64, 90)])
    """
    piece = _PIECE if piece is None else piece
    if piece <= 0 or piece % _BLOCK:
        raise ValueError(f"expected a piece size that is a multiple of {_BLOCK}, got {piece}")
    bounds = [*range(0, numel, piece), numel]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < _BLOCK:
        del bounds[-2]
    return zip(bounds[:-1], bounds[1:], strict=True)


def fill_normal(out: torch.Tensor, generator: torch.Generator, *, piece: int | None = None) -> None:
    """Fill a contiguous ``out`` with the values of one float64 ``torch.randn`` of its shape
    from the CPU ``generator``, cast to its dtype; ``piece`` float64 entries at a time."""
    flat = out.view(-1)
    for lo, hi in pieces(flat.numel(), piece):
        flat[lo:hi].copy_(torch.randn(hi - lo, generator=generator, dtype=torch.float64))


def skip_normal(numel: int, generator: torch.Generator, *, piece: int | None = None) -> None:
    """Advance ``generator`` past the draws of a tensor of ``numel`` entries (a tensor
    whose direction is not Gaussian still takes its draws, so later tensors get theirs)."""
    for lo, hi in pieces(numel, piece):
        torch.randn(hi - lo, generator=generator, dtype=torch.float64)


def _ratio(weight_norm: torch.Tensor, direction_norm: torch.Tensor) -> torch.Tensor:
    """``weight_norm / direction_norm``, 0 where the direction is zero (it stays zero)."""
    zero = direction_norm == 0
    return torch.where(zero, 0.0, weight_norm / torch.where(zero, 1.0, direction_norm))


def normalize_(d: torch.Tensor, w: torch.Tensor, norm: str, ignore: str) -> torch.Tensor:
    """Normalize a contiguous ``d`` to the weights ``w`` (same shape; the dtype of ``d`` or
    a narrower one, read a block of filters at a time in ``d``'s dtype: no copy of ``w``)
    in place, as :func:`landscape.directions.normalize_direction` does; returns ``d``."""
    if shards.is_dtensor(d):  # a sharded model's: norms reduced over the mesh
        return shards.normalize_sharded_(d, w, norm, ignore)
    if d.dim() <= 1:
        if ignore == "biasbn":
            return d.zero_()
        normalize_(d.view(1, -1), w.reshape(1, -1), norm, ignore)  # one filter
        return d
    if norm == "weight":
        d.mul_(w)  # w read in d's dtype as it goes
    elif norm == "layer":
        d.mul_(_ratio(_weight_norms(w.reshape(1, -1), d.dtype)[0], d.norm()))
    elif norm == "filter":
        rows = d.view(d.shape[0], -1)
        weight = _weight_norms(w.reshape(w.shape[0], -1), d.dtype)
        rows.mul_(_ratio(weight, rows.norm(dim=1))[:, None])
    return d


def _weight_norms(rows: torch.Tensor, work: torch.dtype) -> torch.Tensor:
    """The norm of each row of the weights in ``work`` (the same values as
    ``rows.to(work).norm(dim=1)``): rows of ``work`` are read in place, narrower ones cast
    a block of rows at a time (a one-row tensor in float64 pieces)."""
    if rows.dtype == work:
        return rows.norm(dim=1)
    if rows.shape[0] == 1:  # one filter: its sum of squares in float64 pieces
        total = sum(dot64(rows[0, lo:hi], rows[0, lo:hi]) for lo, hi in pieces(rows.shape[1]))
        return torch.tensor([total**0.5], dtype=work, device=rows.device)
    step = max(2, _PIECE // max(1, rows.shape[1]))  # at least two rows: reduced row by row
    parts = []
    for lo in range(0, rows.shape[0], step):
        hi = min(rows.shape[0], lo + step)
        start = min(lo, hi - 2)  # a last block of one row is read with the row before it
        parts.append(rows[start:hi].to(work).norm(dim=1)[lo - start :])
    return torch.cat(parts)


def draw_tensor(
    w: torch.Tensor, generator: torch.Generator, norm: str, ignore: str
) -> torch.Tensor:
    """The normalized Gaussian direction of one tensor ``w``, in ``w``'s dtype and device:
    a draft in float32 (or ``w``'s dtype if wider), filled in pieces and normalized in
    place; the only other memory is one float64 piece (``w`` is read a block of filters
    at a time, never cast whole). A DTensor ``w`` gets a DTensor laid out like it (see
    ``landscape.shards.draw_sharded``)."""
    if shards.is_dtensor(w):
        return shards.draw_sharded(w, lambda out: fill_normal(out, generator), norm, ignore)
    work = torch.promote_types(w.dtype, torch.float32)
    draft = torch.empty(w.shape, dtype=work, device=w.device)
    fill_normal(draft, generator)
    normalize_(draft, w.detach(), norm, ignore)
    return draft.to(w.dtype)


def dot64(a: torch.Tensor, b: torch.Tensor, *, piece: int | None = None) -> float:
    """``<a, b>`` in float64, ``piece`` entries at a time (no float64 copy of either)."""
    if shards.is_dtensor(a):  # a sharded model's: reduced over the mesh
        return shards.dot64(a, b)
    a, b = a.detach().reshape(-1), b.detach().reshape(-1)
    piece = _PIECE if piece is None else piece
    total = 0.0
    for lo in range(0, a.numel(), piece):
        total += float(torch.dot(a[lo : lo + piece].double(), b[lo : lo + piece].double()))
    return total
