"""What :func:`torch.func.vmap` refuses: such an error sends the points of
:meth:`~landscape.objective.Objective.evaluate_points` one at a time, where any other error
is raised at once.
"""

from __future__ import annotations

__all__ = ["VMAP_UNSUPPORTED", "vmap_unsupported"]

# What torch.func.vmap raises for what it cannot map (torch 2.x messages): random draws
# under randomness="error", data-dependent control flow (``if tensor``, ``.item()``),
# dynamic shapes, train-mode BatchNorm's unbatched running stats, an autograd.Function
# without vmap support, reading a batched tensor's storage (``.numpy()``, ``.tolist()``),
# and an in-place update of an unbatched tensor by a batched one.
VMAP_UNSUPPORTED = (
    "vmap",
    "functorch",
    "batched tensor",
    "batching rule",
    "doesn't have storage",
    "doesn't match the broadcast shape",
)


def vmap_unsupported(err: BaseException) -> bool:
    """Whether ``err`` is ``vmap`` refusing an operation (then the points go one at a
    time), rather than an error the model or loss would raise anyway.

    Example:
        >>> vmap_unsupported(RuntimeError("vmap: called random operation ..."))
        True
        >>> vmap_unsupported(ValueError("bug")), vmap_unsupported(RuntimeError("bug"))
        (False, False)
    """
    message = str(err).lower()
    return isinstance(err, RuntimeError) and any(m in message for m in VMAP_UNSUPPORTED)
