"""DTensor shards (FSDP2 ``fully_shard``, tensor parallel): this rank's piece of a tensor,
and norms, dot products and fingerprints of sharded tensors reduced over the device mesh.

Supported placements, on each dimension of a device mesh: ``Shard(dim)`` and
``Replicate()``. A per-filter norm (filter = index along dim 0) is local where dim 0 is
sharded or replicated, and all-reduced (sum of squares) over the mesh dimensions that
shard another dim (``Shard(1)``: RowwiseParallel's weight); a whole-tensor norm or a dot
product is all-reduced over every sharding mesh dimension. ``Partial`` and strided shards
(FSDP2 and tensor parallel on one mesh) are refused by ``placement_problem``.

Nothing here gathers a whole tensor: only ``draw_sharded`` holds one tensor's full
draft (one tensor at a time), so that every rank draws the same numbers as one process.

Example:
    >>> is_dtensor(torch.ones(2))
    False
    >>> local(torch.ones(2)).tolist()  # a plain tensor is its own piece
    [1.0, 1.0]
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.distributed as dist

from ._hashing import state_sha256 as plain_sha256


def is_dtensor(t: object) -> bool:
    """Whether ``t`` is a DTensor (never imports ``torch.distributed.tensor``: without it
    loaded no DTensor exists)."""
    cls = getattr(sys.modules.get("torch.distributed.tensor"), "DTensor", None)
    return cls is not None and isinstance(t, cls)


def placement_problem(name: str, t: Any) -> str | None:
    """A line naming a placement of DTensor ``t`` that is not supported, or None."""
    from torch.distributed.tensor import Replicate, Shard

    for p in t.placements:
        if type(p) not in (Shard, Replicate):
            return (
                f"expected DTensor placements Shard(dim) or Replicate(), got {name!r} placed "
                f"{p!r} (FSDP2 and tensor parallel on one mesh, or a pending reduction); "
                "gather it into an unsharded model first: model.load_state_dict("
                "get_model_state_dict(sharded, options=StateDictOptions(full_state_dict=True)))"
            )
    return None


def local(t: Any) -> torch.Tensor:
    """This rank's piece of a DTensor, sharing its storage (writes go into the DTensor);
    a plain tensor itself."""
    if not is_dtensor(t):
        return t
    with torch.no_grad():
        return t.to_local()


def local_like(d: Any, like: Any) -> torch.Tensor:
    """The piece of ``d`` (a full-shape tensor, or a DTensor) laid out as this rank's piece
    of the DTensor ``like`` (``d`` itself where ``like`` is a plain tensor): a full tensor
    is sliced by the placements (no communication), a DTensor redistributed if placed
    otherwise."""
    if not is_dtensor(like):
        return d.full_tensor() if is_dtensor(d) else d
    if is_dtensor(d):
        if d.placements != like.placements or d.device_mesh != like.device_mesh:
            d = d.redistribute(like.device_mesh, like.placements)
        return local(d)
    from torch.distributed.tensor import distribute_tensor

    return local(distribute_tensor(d, like.device_mesh, like.placements, src_data_rank=None))


def _reduced_dims(t: Any, whole: bool) -> list[int]:
    """The mesh dimensions over which pieces of a norm are summed: those that shard ``t``
    (along dims other than 0 unless ``whole``)."""
    from torch.distributed.tensor import Shard

    if not is_dtensor(t):
        return []
    return [i for i, p in enumerate(t.placements) if isinstance(p, Shard) and (whole or p.dim)]


def row_piece(name: str, t: Any) -> tuple[int, str | None]:
    """For the DTensor ``t``: the index, in ``t``'s flattened (row-major) order, of its
    local piece's first entry, which with ``Shard(0)`` and ``Replicate()`` placements (on
    each dimension of the mesh: FSDP2, HSDP, ``ColwiseParallel``) is a stretch of whole
    rows (or of a 1-D tensor); a line naming what is not supported instead (another
    placement) as ``(0, line)``."""
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    if not all(type(p) is Replicate or (type(p) is Shard and p.dim == 0) for p in t.placements):
        return 0, (
            f"expected DTensors placed Shard(0) or Replicate() on every mesh dimension "
            f"(FSDP2, HSDP, ColwiseParallel), got {name!r} placed {tuple(t.placements)!r}"
        )
    _, offset = compute_local_shape_and_global_offset(t.shape, t.device_mesh, t.placements)
    return (offset[0] * math.prod(t.shape[1:]) if t.dim() else 0), None


def sum_over_pieces(x: torch.Tensor, t: Any) -> torch.Tensor:
    """``x``, a sum over this rank's piece of ``t``, summed over the ranks whose pieces
    make ``t`` (in place; ``x`` itself for a plain tensor)."""
    return _sum_over(x, t, _reduced_dims(t, whole=True))


def _sum_over(x: torch.Tensor, t: Any, dims: list[int]) -> torch.Tensor:
    for i in dims:
        dist.all_reduce(x, group=t.device_mesh.get_group(i))
    return x


def _row_norms(rows: torch.Tensor, t: Any, dims: list[int]) -> torch.Tensor:
    """The norms of ``rows`` (a piece of ``t``) summed over the mesh ``dims``; where none,
    exactly what the unsharded tensor's ``norm(dim=1)`` gives."""
    if not dims:
        return rows.norm(dim=1)
    return _sum_over(rows.pow(2).sum(dim=1), t, dims).sqrt()


def _ratio(weight_norm: torch.Tensor, direction_norm: torch.Tensor) -> torch.Tensor:
    zero = direction_norm == 0
    return torch.where(zero, 0.0, weight_norm / torch.where(zero, 1.0, direction_norm))


@torch.no_grad()
def normalize_sharded_(d: Any, w: torch.Tensor, norm: str, ignore: str) -> torch.Tensor:
    """Normalize the DTensor ``d`` to the weights ``w`` (same shape) in place, as
    ``landscape.directions.drawing.normalize_`` does a plain tensor; returns ``d``."""
    piece, weights = local(d), local_like(w, d).to(local(d).dtype)
    if d.dim() <= 1 and ignore == "biasbn":
        piece.zero_()
    elif norm == "weight":
        piece.mul_(weights)
    elif norm in ("filter", "layer"):
        whole = norm == "layer" or d.dim() <= 1
        shape = (1, piece.numel()) if whole else (piece.shape[0], math.prod(piece.shape[1:]))
        rows = piece.view(shape)  # explicit: an empty piece (uneven shards) has no -1
        w_rows = weights.reshape(rows.shape)
        dims = _reduced_dims(d, whole)
        rows.mul_(_ratio(_row_norms(w_rows, d, dims), _row_norms(rows, d, dims))[:, None])
    return d


def draw_sharded(
    w: Any, fill: Callable[[torch.Tensor], None], norm: str, ignore: str
) -> torch.Tensor:
    """The normalized Gaussian direction of the DTensor ``w``, laid out like ``w``: the
    full-shape draft is filled by ``fill`` (the same numbers on every rank and as for an
    unsharded tensor), this rank's piece kept, normalized with norms reduced over the mesh,
    and cast to ``w``'s dtype."""
    from torch.distributed.tensor import DTensor

    work = torch.promote_types(w.dtype, torch.float32)
    full = torch.empty(w.shape, dtype=work)
    fill(full)
    piece = (
        local_like(full, w).to(device=local(w).device).clone(memory_format=torch.contiguous_format)
    )
    del full
    d = DTensor.from_local(piece, w.device_mesh, w.placements, run_check=False,
                           shape=w.shape, stride=w.stride())  # fmt: skip
    normalize_sharded_(d, w, norm, ignore)
    return d.to(w.dtype)


def dot64(a: torch.Tensor, b: torch.Tensor) -> float:
    """``<a, b>`` in float64 for a DTensor ``a`` (``b`` full or sharded): the pieces' dots
    summed over the mesh dimensions that shard ``a``."""
    pa, pb = local(a).detach().reshape(-1), local_like(b, a).detach().reshape(-1)
    total = torch.dot(pa.double(), pb.double()).reshape(1)
    return float(_sum_over(total, a, _reduced_dims(a, True)))


def state_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """:func:`landscape.params.state_sha256`, and for a state holding DTensors a digest of
    every rank's pieces (the same on every rank; every rank must call it). The pieces, not
    the whole tensors, are hashed: the fingerprint depends on the layout (the number of
    ranks and the placements)."""
    sharded = sorted(n for n, t in state.items() if is_dtensor(t))
    if not sharded:
        return plain_sha256(state)
    plain = {n: t for n, t in state.items() if not is_dtensor(t)}
    mine = plain_sha256({n: local(state[n]) for n in sharded})
    pieces: list[Any] = [mine]
    if dist.is_available() and dist.is_initialized():
        pieces = [None] * dist.get_world_size()
        dist.all_gather_object(pieces, mine)
    h = hashlib.sha256(plain_sha256(plain).encode())
    for name in sharded:
        t: Any = state[name]
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|{t.placements}|".encode())
    h.update("|".join(pieces).encode())
    return h.hexdigest()
