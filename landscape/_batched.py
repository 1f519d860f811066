"""Private helpers of :mod:`landscape.objective`: precision, K points per pass, stacked states.

Several points ``base + sum_j c[k, j] d_j`` are evaluated in one pass over a batch by
stacking their states along a new leading dimension and mapping
:func:`torch.func.functional_call` over it with :func:`torch.func.vmap`: a linear layer
becomes one batched matrix product, a convolution one grouped convolution. On a GPU this
turns K small launches into one large one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

import torch

from . import options
from .checks import check_choice
from .options import PrecisionName, values
from .params import end_index

Precision = PrecisionName  # the Literal alias of landscape.options.Precision
PRECISIONS = values(options.Precision)

# Largest K the automatic choice makes; beyond it launches are already large.
MAX_AUTO_POINTS = 64
# Share of the free device memory the automatic choice may plan to use.
MEMORY_SHARE = 0.5
# Activation memory of one pass (all K points) that keeps a GPU busy: a point whose batch
# already needs this much is evaluated alone.
ACTIVATION_TARGET = 2**30


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """Run a block in the requested precision, restoring every global flag afterwards.

    - ``fp32``: nothing changes.
    - ``tf32``: on CUDA, float32 matrix products and convolutions may use TensorFloat-32
      (``torch.backends.cuda.matmul.allow_tf32`` and ``torch.backends.cudnn.allow_tf32``
      set for the block and restored); elsewhere the same as ``fp32``.
    - ``bf16``: :func:`torch.autocast` to bfloat16 on the device.
    """
    if precision == "fp32":
        yield
    elif precision == "tf32":
        if device.type != "cuda":
            yield
            return
        saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    elif precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        check_choice(precision, options.Precision, "precision")


def upcast(outputs: object, dtype: torch.dtype) -> object:
    """Reduced-precision floating outputs back to ``dtype`` so losses are computed in it."""
    if isinstance(outputs, torch.Tensor) and outputs.dtype in (torch.bfloat16, torch.float16):
        return outputs.to(dtype)
    return outputs


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
                name: d.to(device=base[name].device, dtype=base[name].dtype)
                for name, d in direction.items()
                if base[name].is_floating_point()
            }
        )
    return moved


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
