"""K points per pass: several points ``base + sum_j c[k, j] d_j`` evaluated in one pass
over a batch by stacking their states along a new leading dimension and mapping
:func:`torch.func.functional_call` over it with :func:`torch.func.vmap` (a linear layer
becomes one batched matrix product, a convolution one grouped convolution; on a GPU K small
launches become one large one), and the fallbacks: fewer points per pass when out of
memory, one point at a time when ``vmap`` cannot map the model.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.func import vmap

from ..checks import check_state
from ..data import split_batch
from ..params import end_index, merge_tied
from .calling import State, _functional_call
from .sharded import points_in_place
from .vmap_errors import VMAP_UNSUPPORTED, vmap_unsupported  # noqa: F401  (the old import path)
from .workspace import PointPlan

# Largest K the automatic choice makes; beyond it launches are already large.
MAX_AUTO_POINTS = 64
# Share of the free device memory the automatic choice may plan to use.
MEMORY_SHARE = 0.5
# Activation memory of one pass (all K points) that keeps a GPU busy: a point whose batch
# already needs this much is evaluated alone.
ACTIVATION_TARGET = 2**30


def move_directions(
    directions: Sequence[Mapping[str, torch.Tensor]], base: Mapping[str, torch.Tensor]
) -> list[dict[str, torch.Tensor]]:
    """Directions moved once to the device and dtype of the base tensors they perturb.

    Names whose base tensor is not floating (``num_batches_tracked``) are dropped: they
    are never moved.
    """
    moved = []
    for direction in directions:
        moved.append(
            {
                name: d if _placed_like(d, base[name]) else d.to(base[name])
                for name, d in direction.items()
                if base[name].is_floating_point()
            }
        )
    return moved


def _placed_like(d: torch.Tensor, t: torch.Tensor) -> bool:
    """Whether ``d`` has the device and dtype of ``t`` already (then ``d.to(t)`` is ``d``:
    skipping the call saves a dispatch per tensor and chunk of points)."""
    return d.dtype == t.dtype and d.device == t.device


def stack_points(
    base: Mapping[str, torch.Tensor],
    directions: Sequence[Mapping[str, torch.Tensor]],
    coords: torch.Tensor,
    *,
    ends: Sequence[Mapping[str, torch.Tensor] | None] | None = None,
) -> dict[str, torch.Tensor]:
    """The perturbed tensors of K points, stacked: ``{name: (K, *shape)}``.

    Only names that some direction moves are stacked; the rest stay shared. Each slice is
    formed like :func:`landscape.params.point_state` for one point (the same operations
    in the same order and dtype: ``(base + c_0 d_0) + c_1 d_1``, an end-carrying
    direction first and from its end for ``c >= 0.5``), so every stacked slice equals the
    one-point state bit for bit.

    Args:
        base: complete state on the device.
        directions: from :func:`move_directions`.
        coords: ``(K, len(directions))``, float64 (on any device).
        ends: one end state or None per direction (at most one set), on the device.
    """
    j_end = end_index(ends, len(directions))
    order = list(range(len(directions)))
    if j_end is not None:
        order = [j_end, *(j for j in order if j != j_end)]
    names = [n for d in directions for n in d]
    stacked: dict[str, torch.Tensor] = {}
    for name in dict.fromkeys(names):
        t = base[name]
        out = t.unsqueeze(0).expand(len(coords), *t.shape)
        for j in order:
            if name not in directions[j]:
                continue
            c = coords[:, j].to(device=t.device)
            if j == j_end:
                from_end = c >= 0.5
                c = torch.where(from_end, c - 1.0, c)
                end = ends[j][name]  # type: ignore[index]
                out = torch.where(from_end.reshape(-1, *([1] * t.dim())), end, out)
            c = c.to(dtype=t.dtype).reshape(-1, *([1] * t.dim()))
            out = out + c * directions[j][name]
        stacked[name] = out.contiguous()
    return stacked


def _put_rows(totals: torch.Tensor, where: np.ndarray, rows: torch.Tensor) -> None:
    """``totals[where] = rows`` for increasing row numbers ``where``: one copy for a run of
    consecutive rows (the usual chunk), one indexed copy otherwise, rather than a row at a
    time."""
    first, last = int(where[0]), int(where[-1])
    if last - first == len(where) - 1:  # increasing: consecutive
        totals[first : last + 1] = rows
    else:
        totals[torch.from_numpy(where).to(totals.device)] = rows.to(totals.device)


def state_bytes(state: Mapping[str, torch.Tensor]) -> int:
    """Bytes held by the tensors of a state."""
    return sum(t.numel() * t.element_size() for t in state.values())


def auto_points_per_pass(
    device: torch.device,
    perturbed_bytes: int,
    activation_bytes: int,
    *,
    free_bytes: int | None = None,
) -> int:
    """How many points to evaluate per pass: 1 on CPU; on CUDA enough points that one
    pass has about :data:`ACTIVATION_TARGET` bytes of activations (small models are
    launch-bound one point at a time), as many as half the free memory holds (a stacked
    state and the activations of one batch per point), at most :data:`MAX_AUTO_POINTS`.

    Example:
        >>> auto_points_per_pass(torch.device("cpu"), 10**6, 10**6)
        1
        >>> auto_points_per_pass(torch.device("cuda"), 10**6, 10**6, free_bytes=10**8)
        16
    """
    if device.type != "cuda":
        return 1
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(device)
    activation_bytes = max(activation_bytes, 1)
    fits = MEMORY_SHARE * free_bytes // (2 * perturbed_bytes + activation_bytes)
    fills = ACTIVATION_TARGET // activation_bytes
    return int(max(1, min(MAX_AUTO_POINTS, fits, fills)))


class Points:
    """The Objective's evaluation at many points (a mixin of :class:`Objective`)."""

    # -- many points
    def resolve_points_per_pass(self) -> int:
        """K, as given or as chosen for this model, data and device (see the class doc):
        the same for the same model and machine, never found by timing.

        The automatic choice on CUDA runs one forward pass on the first batch to measure
        its activation memory (it resets the device's peak-memory statistics).
        """
        if self.points_per_pass is not None or self.sharded:
            return 1 if self.sharded else self.points_per_pass
        work = self._work
        if work.auto_points is None:
            if not work.vmap_ok or self.device.type != "cuda":
                work.auto_points = 1
            else:
                work.auto_points = auto_points_per_pass(
                    self.device, self._perturbable_bytes(), self._activation_bytes()
                )
        return work.auto_points

    def _perturbable_bytes(self) -> int:
        return state_bytes({n: t for n, t in self.base_state.items() if t.is_floating_point()})

    @torch.no_grad()
    def _activation_bytes(self) -> int:
        batch = next(iter(self.batches()), None)
        if batch is None:
            return 1
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        before = torch.cuda.memory_allocated(self.device)
        self.batch_sums(self.full_state(None), batch)
        torch.cuda.synchronize(self.device)
        return int(torch.cuda.max_memory_allocated(self.device) - before)

    def _batched_totals(
        self,
        base: State,
        directions: list[dict[str, torch.Tensor]],
        coords: np.ndarray,
        ends: list[dict[str, torch.Tensor] | None] | None,
    ) -> tuple[torch.Tensor, int | torch.Tensor]:
        """This rank's float64 sums ``(K, len(names))`` and example count for K points at
        once: stacked states through ``vmap(functional_call)``."""
        stacked = stack_points(base, directions, torch.from_numpy(coords), ends=ends)
        fixed = {n: t for n, t in base.items() if n not in stacked}
        model = self.model

        def point_sums(perturbed: dict[str, torch.Tensor], inputs: Any, targets: Any):
            outputs = _functional_call(model, {**fixed, **perturbed}, inputs)
            return torch.stack([s.to(torch.float64) for s in self.output_sums(outputs, targets)])

        mapped = vmap(point_sums, in_dims=(0, None, None), randomness="error")
        totals = torch.zeros(len(coords), len(self.names), dtype=torch.float64, device=self.device)
        count: int | torch.Tensor = 0
        with self._evaluating():
            for batch in self.batches():
                inputs, targets = split_batch(batch, self.label_keys)
                totals += mapped(stacked, inputs, targets)
                count = count + self._count_fn(targets)
        return totals, count

    def _one_point_plan(
        self,
        base: State,
        directions: list[dict[str, torch.Tensor]],
        ends: list[dict[str, torch.Tensor] | None] | None,
    ) -> PointPlan:
        """Where the one-point path writes points, for these tensors.

        Kept for the next call with the same tensors (same objects, not modified in place
        since: their version counters are part of the key), as when a surface evaluates
        chunk after chunk along the same directions.
        """
        work = self._work
        work.ensure()
        states = (base, *directions, *(e for e in ends or () if e is not None))
        tensors = [t for state in states for t in state.values()]
        key = tuple((name, id(t), t._version) for state in states for name, t in state.items()) + (
            len(directions),
            end_index(ends, len(directions)),
        )
        if work.plan is not None and work.plan[0] == key:
            return work.plan[2]
        work.plan = None  # free the old buffers before making new ones
        plan = PointPlan(base, directions, ends, work)
        # The tensors are held with the key: an id is unique only while its object lives,
        # and a freed direction's id is often given to the next one made.
        work.plan = (key, tensors, plan)
        return plan

    def _one_point_totals(
        self, plan: PointPlan, coords: np.ndarray
    ) -> tuple[list[torch.Tensor], list[int | torch.Tensor]]:
        """One point at a time through the private module: the batch sums of every pass,
        and the counts."""
        self._work.bind(plan.bindings)
        points = coords.tolist()

        def run(seeded: bool) -> tuple[list[torch.Tensor], list[int | torch.Tensor]]:
            parts: list[torch.Tensor] = []
            counts = []
            for point in points:
                plan.write(point)
                counts.append(self._copy_pass(self.data, parts, seeded))
            return parts, counts

        return self._seeded_if_drawing(run)

    @torch.no_grad()
    def evaluate_points(
        self,
        base: State,
        directions: Sequence[State],
        coords: np.ndarray,
        *,
        ends: Sequence[State | None] | None = None,
        on_device: bool = False,
    ) -> dict[str, Any]:
        """Exact means at the points ``base + sum_j coords[k, j] * directions[j]``.

        Points are formed as :func:`landscape.params.point_state` forms them, and
        evaluated K at a time (see ``points_per_pass``). A point with all coordinates 0
        always goes the one-point way, so it gives exactly the value at ``base`` whatever
        K. With K > 1 the stacked states equal the one-point states bit for bit, and the
        values agree with the one-point path to float32 rounding (batched kernels sum in
        another order).

        Args:
            base: the centre state (names it lacks take the base state's values).
            directions: one state per coordinate column.
            coords: array ``(num_points, len(directions))``.
            ends: for an interpolation, the end state of its direction (and None for the
                others; at most one is set): then ``directions[j]`` must be ``ends[j] -
                base`` and the point at coordinate 1 is ``ends[j]`` bit for bit (at 0,
                ``base``), where ``base + 1 * (end - base)`` is not ``end`` in floating
                point.
            on_device: return float64 tensors on the device instead of arrays, read
                nothing back (see :meth:`__call__`).

        Returns:
            ``{name: array (num_points,)}`` for the loss and every metric.

        Raises:
            ValueError: unknown names, more than one end, or a direction that is not
                its end minus the base.
        """
        coords = np.asarray(coords, dtype=np.float64).reshape(len(coords), len(directions))
        if self.sharded and len(coords):  # written into the model's own shards
            return points_in_place(self, base, list(directions), coords, ends=ends,
                                   on_device=on_device)  # fmt: skip
        if len(coords) == 0:
            empty = torch.empty(0, dtype=torch.float64, device=self.device)
            return {name: empty if on_device else np.empty(0) for name in self.names}
        full = self.full_state(base)
        moved = move_directions([merge_tied(d, self._tied) for d in directions], full)
        j_end = end_index(ends, len(directions))
        moved_ends = None
        if j_end is not None:
            end = merge_tied(ends[j_end], self._tied)  # type: ignore[index]
            check_state(end, moved[j_end], name="the end state", against="its direction",
                        unexpected=False)  # fmt: skip
            moved_ends = [None] * len(directions)
            moved_ends[j_end] = {n: end[n].to(full[n]) for n in moved[j_end]}
            names = list(moved[j_end])
            agree = torch.stack(
                [((moved_ends[j_end][n] - full[n]) == moved[j_end][n]).all() for n in names]
            ).tolist()  # one read for all tensors
            for name, ok in zip(names, agree, strict=True):
                if not ok:
                    raise ValueError(
                        f"direction {j_end} must be its end state minus the base state (an "
                        f"interpolation from the base to the end); {name!r} is not"
                    )
        totals = torch.empty(len(coords), len(self.names), dtype=torch.float64, device=self.device)
        counts: list[int | torch.Tensor] = [0] * len(coords)
        k = self.resolve_points_per_pass()
        # the centre goes the one-point way, so it is the checkpoint's value to the last bit
        centre = ~coords.any(axis=1)
        if centre.any():
            order = np.concatenate([np.flatnonzero(centre), np.flatnonzero(~centre)])
        else:
            order = np.arange(len(coords))
        plan = None
        start = 0
        while start < len(order):
            work = self._work
            one_at_a_time = k == 1 or not work.vmap_ok or centre[order[start]]
            stop = start + 1 if centre[order[start]] else len(order)
            stop = stop if one_at_a_time else min(stop, start + k)
            part = order[start:stop]
            points = coords[part]
            if not one_at_a_time:
                # always K points per pass (the last one repeated), so that a point's value
                # does not depend on how many others share its pass: a resumed run equals one
                # never interrupted
                padded = np.concatenate([points, points[-1:].repeat(k - len(points), axis=0)])
                try:
                    sums, num = self._batched_totals(full, moved, padded, moved_ends)
                except torch.cuda.OutOfMemoryError:
                    k = max(1, k // 2)
                    work.auto_points = k
                    warnings.warn(
                        f"out of memory with {stop - start} points per pass; trying {k}",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    continue
                except RuntimeError as err:
                    if not vmap_unsupported(err):
                        raise  # a bug in the model or loss: at once, not after a warning
                    work.vmap_ok = False
                    warnings.warn(
                        "evaluating one point at a time: this model cannot be evaluated at "
                        f"several points per pass with torch.func.vmap ({str(err)[:200]})",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    continue
                _put_rows(totals, part, sums[: len(part)])
                for flat in part.tolist():
                    counts[flat] = num
            else:
                if plan is None:
                    plan = self._one_point_plan(full, moved, moved_ends)
                parts, nums = self._one_point_totals(plan, points)
                _put_rows(totals, part, self._to_totals(parts, len(points)))
                for flat, num in zip(part.tolist(), nums, strict=True):
                    counts[flat] = num
            start = stop
        means = self._means(totals, counts, on_device=on_device)
        if not on_device:
            means = means.cpu().numpy()
        return {name: means[:, i] for i, name in enumerate(self.names)}
