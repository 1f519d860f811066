"""Recipe directions: random directions that are never stored, each tensor's values made
again whenever they are needed (``random_directions(..., stored=False)``).

A :class:`RecipeDirection` is a mapping from names to tensors, as every direction, that
holds no values: ``(seed, axis, norm, ignore)`` and the weights it is normalized to (the
tensors themselves, not copies). The raw Gaussian entries of a tensor are cut into
chunks of :data:`CHUNK` entries of its flattened (row-major) order, and chunk ``c`` is
drawn by a ``torch.Generator`` on the weights' device seeded with a 63-bit key hashed
from ``(seed, axis, name, c)``: any stretch of a tensor can be made alone, and its values
do not depend on how the tensor is cut to make it (a shard's rows equal those rows of the
whole tensor). Entries are drawn in float32 (float64 for a float64 tensor), normalized
to the weights filter by filter (a block of whole filters at a time), and cast to the
weights' dtype. The values depend on the device type's generator (CPU and CUDA draw
different numbers), recorded as ``settings["generator"]``.

Example:
    >>> from torch import nn
    >>> model = nn.Linear(6, 4)
    >>> d = RecipeDirection(dict(model.named_parameters()), seed=0, axis=0)
    >>> w = model.weight.detach()
    >>> torch.allclose(d["weight"].norm(dim=1), w.norm(dim=1)), d["bias"].abs().sum().item()
    (True, 0.0)
    >>> torch.equal(d.rows("weight", 1, 3), d["weight"][1:3])
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any, TypeGuard, cast

import torch

from .. import shards
from .core import Directions
from .drawing import _ratio
from .normalization import is_running_stat

__all__ = ["CHUNK", "RecipeDirection", "is_recipe", "recipe_key", "stored_directions"]

CHUNK = 2**16  # entries drawn from one generator key: part of the values' definition
BLOCK = 2**18  # entries (whole filters, at least one) made at a time: the scratch's size
GENERATOR = "torch-chunked-v1"  # recorded in the settings: how the values are made


def recipe_key(seed: int, axis: int, name: str, chunk: int) -> int:
    """The generator seed of chunk ``chunk`` of tensor ``name`` along direction ``axis``:
    the first 63 bits of the SHA-256 of the four.

    Example:
        >>> recipe_key(0, 0, "weight", 0) == recipe_key(0, 0, "weight", 0)
        True
        >>> recipe_key(0, 0, "weight", 0) != recipe_key(0, 1, "weight", 0)
        True
    """
    digest = hashlib.sha256(f"{seed}\x00{axis}\x00{name}\x00{chunk}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def raw_entries(
    name: str, numel: int, lo: int, hi: int, *, seed: int, axis: int, device, dtype
) -> torch.Tensor:
    """Entries ``lo:hi`` of the raw Gaussian draft of a tensor of ``numel`` entries: the
    chunks that cover them are drawn (``min(CHUNK, numel - start)`` entries each) and cut."""
    out = torch.empty(hi - lo, device=device, dtype=dtype)
    generator = torch.Generator(device=device)
    for chunk in range(lo // CHUNK, (hi - 1) // CHUNK + 1 if hi > lo else lo // CHUNK):
        start = chunk * CHUNK
        size = min(CHUNK, numel - start)
        generator.manual_seed(recipe_key(seed, axis, name, chunk))
        drawn = torch.randn(size, generator=generator, device=device, dtype=dtype)
        a, b = max(lo, start), min(hi, start + size)
        out[a - lo : b - lo] = drawn[a - start : b - start]
    return out


class RecipeDirection(Mapping):
    """A random direction made again on demand (see the module docstring).

    Args:
        weights: the tensors it is normalized to, by name (held, not copied: the values
            follow them); integer tensors get no direction.
        seed: the seed (an int).
        axis: 0 for ``x``, 1 for ``y`` (a running statistic moves along ``x`` only).
        norm, ignore: as for :func:`landscape.directions.random_direction`.

    ``d[name]`` is the whole tensor (in the weights' dtype and device); :meth:`rows` a
    stretch of filters; :meth:`blocks` the tensor in blocks of at most :data:`BLOCK`
    entries (whole filters), what a surface reads so that no whole tensor is made.

    Weights that are DTensors placed ``Shard(0)`` or ``Replicate()`` on a one-dimensional
    mesh (FSDP2, ``ColwiseParallel``) get DTensors laid out like them: each rank makes only
    its piece, the same values as those entries of the unsharded direction (the whole
    tensor's norms, for ``norm="layer"`` and 1-D filters, summed over the ranks: a
    collective, so every rank must ask for the same tensors); :meth:`rows` and
    :meth:`blocks` count this rank's rows.
    """

    def __init__(
        self,
        weights: Mapping[str, torch.Tensor],
        *,
        seed: int,
        axis: int,
        norm: str = "filter",
        ignore: str = "biasbn",
    ):
        self.weights = {n: t.detach() for n, t in weights.items() if t.is_floating_point()}
        self.seed, self.axis, self.norm, self.ignore = int(seed), int(axis), norm, ignore
        self._starts: dict[str, int] = {}  # a DTensor's piece: its first entry's index
        for name, t in self.weights.items():
            if shards.is_dtensor(t):
                start, problem = shards.row_piece(name, t)
                if problem is not None:
                    raise ValueError(problem)
                self._starts[name] = start

    def recipe(self) -> dict[str, Any]:
        """What makes the values, besides the weights: recorded in a surface file."""
        return {"seed": self.seed, "axis": self.axis, "norm": self.norm, "ignore": self.ignore,
                "generator": GENERATOR, "chunk": CHUNK,
                "device": self._device_type()}  # fmt: skip

    def _device_type(self) -> str:
        types = sorted({t.device.type for t in self.weights.values()})
        return "+".join(types) if types else "cpu"

    def restricted(self, keep: set[str]) -> RecipeDirection:
        """The same recipe over the names in ``keep`` only."""
        return RecipeDirection({n: t for n, t in self.weights.items() if n in keep},
                               seed=self.seed, axis=self.axis, norm=self.norm,
                               ignore=self.ignore)  # fmt: skip

    def __iter__(self) -> Iterator[str]:
        return iter(self.weights)

    def __len__(self) -> int:
        return len(self.weights)

    def __contains__(self, name: object) -> bool:  # without making the values
        return name in self.weights

    def __getitem__(self, name: str) -> torch.Tensor:
        w = self.weights[name]
        out = torch.empty_like(shards.local(w), memory_format=torch.contiguous_format)
        rows = out.view(self._local_rows(name).shape)
        for lo, hi, block in self.blocks(name):
            rows[lo:hi] = block
        if name not in self._starts:
            return out
        from torch.distributed.tensor import DTensor

        like = cast(DTensor, w)
        return DTensor.from_local(out, like.device_mesh, like.placements, run_check=False,
                                  shape=w.shape, stride=w.stride())  # fmt: skip

    def _local_rows(self, name: str) -> torch.Tensor:
        """This rank's piece of the weights as rows (filters; a 1-D piece as one row)."""
        w = self.weights[name]
        piece = shards.local(w)
        return piece.reshape(piece.shape[0] if w.dim() > 1 else 1, -1)

    def _whole_norm(self, name: str) -> bool:
        """Whether the tensor's direction is scaled by whole-tensor norms: ``norm="layer"``,
        or one filter (1-D) whose entries lie on several ranks."""
        w = self.weights[name]
        return self.norm == "layer" or (self.norm == "filter" and w.dim() <= 1
                                        and name in self._starts)  # fmt: skip

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecipeDirection):
            return NotImplemented
        return (
            self.recipe() == other.recipe()
            and list(self.weights) == list(other.weights)
            and all(
                t is other.weights[n] or torch.equal(t, other.weights[n])
                for n, t in self.weights.items()
            )
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RecipeDirection({len(self)} tensors, {self.recipe()})"

    def shape(self, name: str) -> torch.Size:
        return self.weights[name].shape

    def blocks(self, name: str) -> Iterator[tuple[int, int, torch.Tensor]]:
        """``(lo, hi, values)``: filters ``lo:hi`` of tensor ``name`` as a ``(hi - lo, -1)``
        tensor in the weights' dtype, block after block (at most :data:`BLOCK` entries
        each, or one filter)."""
        rows = self._local_rows(name)
        n = rows.shape[0]
        step = max(1, BLOCK // max(1, rows.shape[1]))
        scale = self._layer_scale(name) if self._drawn(name) and self._whole_norm(name) else None
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            yield lo, hi, self._rows(name, lo, hi, scale)

    def rows(self, name: str, lo: int, hi: int) -> torch.Tensor:
        """Filters ``lo:hi`` of tensor ``name`` (rows of dim 0; a tensor with ``dim <= 1``
        is one filter), shaped as those rows of the weights."""
        w = self.weights[name]
        scale = self._layer_scale(name) if self._drawn(name) and self._whole_norm(name) else None
        values = self._rows(name, lo, hi, scale)
        piece = shards.local(w)
        return values.view(hi - lo, *w.shape[1:]) if w.dim() > 1 else values.view(piece.shape)

    def _drawn(self, name: str) -> bool:
        """Whether the tensor's direction is Gaussian (not zero, not the buffer itself)."""
        if is_running_stat(name) and self.ignore == "none":
            return False
        return not (self.ignore == "biasbn" and self.weights[name].dim() <= 1)

    def _rows(self, name: str, lo: int, hi: int, scale: torch.Tensor | None) -> torch.Tensor:
        w = self.weights[name]
        w_rows = self._local_rows(name)[lo:hi]
        if not self._drawn(name):
            if is_running_stat(name) and self.ignore == "none" and self.axis == 0:
                return w_rows.clone()
            return torch.zeros_like(w_rows)
        work = torch.promote_types(w.dtype, torch.float32)
        width, start = w_rows.shape[1], self._starts.get(name, 0)
        d = raw_entries(name, w.numel(), start + lo * width, start + hi * width,
                        seed=self.seed, axis=self.axis, device=w_rows.device,
                        dtype=work)  # fmt: skip
        d = d.view(hi - lo, width)
        if self.norm == "weight":
            d.mul_(w_rows)
        elif self._whole_norm(name):
            d.mul_(cast(torch.Tensor, scale))  # given for whole-tensor norms
        elif self.norm == "filter":
            d.mul_(_ratio(_row_norms(w_rows.to(work)), _row_norms(d))[:, None])
        return d.to(w.dtype)

    def _layer_scale(self, name: str) -> torch.Tensor:
        """``|w| / |raw|`` of a whole tensor, both norms of float64 sums over blocks (and,
        for a DTensor, over the ranks' pieces)."""
        w = self.weights[name]
        work = torch.promote_types(w.dtype, torch.float32)
        flat, numel = shards.local(w).reshape(-1), w.numel()
        start = self._starts.get(name, 0)
        raw = weight = 0.0
        for lo in range(0, flat.numel(), BLOCK):
            hi = min(flat.numel(), lo + BLOCK)
            d = raw_entries(name, numel, start + lo, start + hi, seed=self.seed,
                            axis=self.axis, device=flat.device, dtype=work)  # fmt: skip
            raw += float(torch.dot(d.double(), d.double()))
            part = flat[lo:hi].double()
            weight += float(torch.dot(part, part))
        if name in self._starts:
            sums = torch.tensor([raw, weight], dtype=torch.float64, device=flat.device)
            raw, weight = shards.sum_over_pieces(sums, w).tolist()
        ratio = 0.0 if raw == 0 else (weight / raw) ** 0.5
        return torch.tensor(ratio, dtype=work, device=flat.device)


def _num_rows(w: torch.Tensor) -> int:
    return w.shape[0] if w.dim() > 1 else 1


def _row_norms(rows: torch.Tensor) -> torch.Tensor:
    """The norm of each row, each made alone: its value does not depend on the other rows
    (a one-row reduction may be split over threads, which changes its rounding)."""
    if rows.shape[0] == 1:  # as two rows: reduced as every block of rows is
        return torch.cat([rows, rows]).norm(dim=1)[:1]
    return rows.norm(dim=1)


def is_recipe(direction: object) -> TypeGuard[RecipeDirection]:
    """Whether a direction is a :class:`RecipeDirection` (its values made on demand)."""
    return isinstance(direction, RecipeDirection)


def stored_directions(directions: Directions) -> Directions:
    """``directions`` with every recipe made into stored tensors (the same values, bit
    for bit, held in memory: two whole directions), other settings kept.

    Example:
        >>> from torch import nn
        >>> from landscape.directions import random_directions
        >>> recipes = random_directions(nn.Linear(3, 2), stored=False)
        >>> held = stored_directions(recipes)
        >>> type(held.x) is dict, torch.equal(held.x["weight"], recipes.x["weight"])
        (True, True)
    """

    def held(d: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {n: d[n] for n in d}

    y = None if directions.y is None else held(directions.y)
    return Directions(held(directions.x), y, kind=directions.kind,
                      settings=dict(directions.settings), x_end=directions.x_end)  # fmt: skip
