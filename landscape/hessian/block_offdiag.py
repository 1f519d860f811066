"""How far the Hessian is from block-diagonal: the off-block share of each block's columns,
estimated with Gaussian probes on any symmetric operator (tested on plain matrices).

For a block ``b`` of coordinates and a Gaussian probe ``v_b ~ N(0, I)`` supported on ``b``,
``H v_b = H_{:,b} v_b`` splits into the in-block part ``H_bb v_b`` and the off-block part
``H_{-b,b} v_b``. Since ``E ||A v||^2 = ||A||_F^2`` for Gaussian ``v``, the ratio of means

    ``R_b = mean_p ||H_{-b,b} v_p||^2 / mean_p ||H_{:,b} v_p||^2``

estimates ``||H_{-b,b}||_F^2 / ||H_{:,b}||_F^2``, and the off-block share is ``sqrt(R_b)``:
the fraction (in Frobenius norm) of the block's columns that a block-diagonal approximation
drops. Summed over a partition of the weights, the same samples give the share of the whole
Hessian, ``||H - blockdiag(H)||_F / ||H||_F``. The standard error is the delta method's for
a ratio of means (then halved over ``sqrt(R)``): ``share +- 1.96 stderr`` covered the exact
share of a tiny MLP's blocks in 90% of 300 seeds with 30 probes, in 94% with 60 (the squared
norms are skewed, so fewer probes cover less often).

Cost: one product with the operator a probe and block (``num_probes * len(blocks)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from .._seeding import draw_dtype, seeded_generator
from ..checks import check_count
from ..linalg import SymmetricOperator

__all__ = ["off_block_samples", "off_block_share"]


def off_block_samples(
    op: SymmetricOperator,
    blocks: Sequence[torch.Tensor],
    *,
    num_probes: int = 50,
    seed: int = 0,
    callback: Callable[[], object] | None = None,
) -> np.ndarray:
    """Squared norms of the off-block and whole products of Gaussian probes, per block.

    Args:
        op: a symmetric operator (``matvec``, ``size``, ``dtype``, ``device``), e.g. a
            :class:`~landscape.hessian.HessianOperator` over every block's weights.
        blocks: the coordinates of each block, disjoint 1-D index tensors.
        num_probes: probes a block; one product each.
        seed: seeds one generator, drawn from block after block (independent blocks).
        callback: called with no argument after every product.

    Returns:
        float64 array ``(len(blocks), num_probes, 2)``: ``||H_{-b,b} v||^2`` and
        ``||H_{:,b} v||^2`` per block and probe (see :func:`off_block_share`).

    Raises:
        ValueError: overlapping or empty blocks, an index out of range, a count below 1.

    Example:
        >>> from landscape.linalg import dense_operator
        >>> op = dense_operator(torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64))
        >>> blocks = [torch.tensor([0]), torch.tensor([1])]
        >>> samples = off_block_samples(op, blocks, num_probes=4)
        >>> samples.shape, off_block_share(samples[0])[0]  # sqrt(1 / (4 + 1))
        ((2, 4, 2), 0.4472135954999579)
    """
    check_count(num_probes, "num_probes")
    blocks = [torch.as_tensor(b, dtype=torch.long).reshape(-1) for b in blocks]
    taken = torch.cat(blocks) if blocks else torch.zeros(0, dtype=torch.long)
    if any(len(b) == 0 for b in blocks) or len(taken.unique()) != len(taken):
        raise ValueError("expected disjoint, non-empty blocks of coordinates, got overlapping "
                         "or empty ones")  # fmt: skip
    if len(taken) and (int(taken.min()) < 0 or int(taken.max()) >= op.size):
        raise ValueError(f"expected coordinates in 0 .. {op.size - 1}, got {taken.min()} .. "
                         f"{taken.max()}")  # fmt: skip
    generator = seeded_generator(seed, op.device)
    draw = draw_dtype(generator, op.dtype)
    out = np.zeros((len(blocks), num_probes, 2))
    for i, index in enumerate(blocks):
        index = index.to(op.device)
        for p in range(num_probes):
            probe = torch.randn(
                len(index), generator=generator, dtype=draw, device=generator.device
            )
            v = torch.zeros(op.size, dtype=op.dtype, device=op.device)
            v[index] = probe.to(op.device, op.dtype)
            h = op.matvec(v).to(torch.float64)
            whole = float(h.dot(h))
            h[index] = 0.0  # what a block-diagonal approximation drops, exactly 0 if none
            out[i, p] = float(h.dot(h)), whole
            if callback is not None:
                callback()
    return out


def off_block_share(samples: np.ndarray) -> tuple[float, float]:
    """The off-block share ``sqrt(sum_b mean_p off_bp / sum_b mean_p whole_bp)`` and its
    standard error (delta method for the ratio of means, blocks independent).

    Args:
        samples: ``(num_probes, 2)`` for one block or ``(blocks, num_probes, 2)`` for their
            union, as :func:`off_block_samples` gives them.

    Returns:
        ``(share, stderr)``: NaN share where every whole product is 0; stderr 0 where
        every off-block product is 0 (a block-diagonal Hessian), NaN with one probe.

    Example:
        >>> samples = np.array([[1.0, 4.0], [3.0, 12.0]])  # the ratio 1/4 on both probes
        >>> off_block_share(samples)
        (0.5, 0.0)
    """
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim == 2:
        samples = samples[None]
    if samples.ndim != 3 or samples.shape[2] != 2 or samples.shape[1] < 1:
        raise ValueError(f"expected samples of shape (blocks, probes, 2), got {samples.shape}")
    num_probes = samples.shape[1]
    off, whole = samples[..., 0], samples[..., 1]
    a, c = float(off.mean(1).sum()), float(whole.mean(1).sum())
    if c == 0:
        return math.nan, math.nan
    ratio = a / c
    if a == 0:
        return 0.0, 0.0
    if num_probes < 2:
        return math.sqrt(ratio), math.nan
    # Var(mean_b a - R mean_b c) summed over independent blocks, the delta method's numerator
    residual = off - ratio * whole
    variance = float(residual.var(1, ddof=1).sum()) / num_probes
    stderr_ratio = math.sqrt(max(variance, 0.0)) / c
    share = math.sqrt(ratio)
    return share, stderr_ratio / (2 * share)
