"""Checking a checkpoint against a model, and loading it into the model.

:func:`load_checkpoint` loads into the given model, as ``load_state_dict`` does, after
checking every name, shape and dtype (so a refused checkpoint leaves the model as it was);
``copy=True`` loads into a deep copy instead.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..checks import check_flag, check_state, listing
from ..params import expand_tied, tied_names
from .reading import PathLike, load_state, state_from_object

__all__ = ["STRICT_HINT", "checkpoint_state", "load_checkpoint"]


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _check_dtypes(
    expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], source: str
) -> None:
    """Refuse int, bool or complex tensors for the model's floating tensors (the cast
    would make them zeros or drop parts); warn about float-to-float casts."""
    refused: list[str] = []
    cast: list[str] = []
    for name, want in expected.items():
        got = state.get(name)
        if got is None or got.dtype == want.dtype or not want.is_floating_point():
            continue
        entry = f"{name} ({_dtype(got)} into {_dtype(want)})"
        (cast if got.is_floating_point() else refused).append(entry)
    if refused:
        raise ValueError(
            f"{source} holds non-floating tensors for the model's floating ones: "
            f"{listing(refused)}; loading them would cast silently. Save the checkpoint "
            "from the trained model's float state_dict"
        )
    if cast:
        warnings.warn(
            f"{source}: tensors cast to the model's dtype: {listing(cast)}",
            UserWarning,
            stacklevel=3,
        )


# The mismatch error's hint; the command line says it as its option (--no-strict).
STRICT_HINT = ", or pass strict=False to allow missing/unexpected keys"

_deepcopy = copy.deepcopy  # ``copy`` is load_checkpoint's option inside its body


def load_checkpoint(
    model: nn.Module,
    path_or_state: PathLike | Mapping[str, Any],
    *,
    strict: bool = True,
    copy: bool = False,
) -> nn.Module:
    """Load a checkpoint into ``model`` (in place, like ``load_state_dict``) and return it.

    The checkpoint is checked in full before any value is written, so a checkpoint that is
    refused leaves ``model`` as it was. Before version 0.3 this returned a loaded copy and
    left ``model`` unchanged; ``copy=True`` keeps that behaviour.

    Args:
        model: the architecture to load into; it keeps its device, dtype and train/eval mode.
        path_or_state: a checkpoint file (see :func:`load_state`) or an already loaded
            state_dict (or a mapping holding one under the usual keys).
        strict: require the checkpoint's names to be exactly the model's. With
            ``strict=False`` missing and unexpected names are allowed (missing ones keep the
            model's values); mis-shaped tensors are an error either way.
        copy: load into a deep copy of ``model`` and leave ``model`` unchanged (for loading
            several checkpoints from one architecture).

    Returns:
        ``model`` itself holding the checkpoint's values, or with ``copy=True`` a new
        ``nn.Module``.

    Raises:
        TypeError: if ``model`` is not an ``nn.Module``, ``path_or_state`` is neither a path
            nor a mapping, or ``copy`` is not a bool.
        FileNotFoundError: if the file does not exist.
        ValueError: if the file cannot be read safely, or its names or shapes do not match
            the model (the message lists missing, unexpected and mis-shaped keys), holds
            int, bool or complex tensors for floating ones, or holds different values under
            two names of one tied tensor. A float tensor of another precision (float16 or
            float64 into float32) is cast, with a warning naming it.

    Example:
        >>> model = nn.Linear(2, 1)
        >>> state = {"weight": torch.ones(1, 2), "bias": torch.zeros(1)}
        >>> load_checkpoint(model, state) is model, model.weight.tolist()
        (True, [[1.0, 1.0]])
        >>> other = load_checkpoint(model, {"weight": torch.zeros(1, 2),
        ...                                 "bias": torch.zeros(1)}, copy=True)
        >>> other is model, other.weight.tolist(), model.weight.tolist()
        (False, [[0.0, 0.0]], [[1.0, 1.0]])
    """
    check_flag(copy, "copy")
    state = checkpoint_state(model, path_or_state, strict=strict)
    target = _deepcopy(model) if copy else model
    target.load_state_dict(state, strict=strict)
    return target


def checkpoint_state(
    model: nn.Module,
    path_or_state: PathLike | Mapping[str, Any],
    *,
    strict: bool = True,
) -> dict[str, torch.Tensor]:
    """A checkpoint's state, checked against ``model``'s names and shapes, without copying
    the model (what :func:`load_checkpoint` loads into its copy).

    Args and Raises: as for :func:`load_checkpoint`; with ``strict=False`` the names the
    model lacks are dropped. A tensor the model ties under several names (an embedding and
    an output head) may be held under any one of them, as ``safetensors.torch.save_model``
    writes it; it is returned under all of them.

    Example:
        >>> state = checkpoint_state(nn.Linear(2, 1), {"weight": torch.ones(1, 2),
        ...                                            "bias": torch.zeros(1)})
        >>> sorted(state)
        ['bias', 'weight']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module model, got {type(model).__name__}")
    if isinstance(path_or_state, (str, os.PathLike)):
        state = load_state(path_or_state)
        source = f"checkpoint {path_or_state}"
    elif isinstance(path_or_state, Mapping):
        state = state_from_object(path_or_state, source="the given state")
        source = "the given state"
    else:
        raise TypeError(
            "expected a path or a state_dict mapping for path_or_state, "
            f"got {type(path_or_state).__name__}"
        )
    try:
        state = expand_tied(state, tied_names(model))
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None
    expected = model.state_dict()
    hint = (
        ". Check that the model is built with the same architecture and settings as the one "
        "that was saved" + (STRICT_HINT if strict else "")
    )
    check_state(state, expected, name=source, against=f"the model {type(model).__name__}",
                missing=strict, unexpected=strict, hint=hint)  # fmt: skip
    _check_dtypes(expected, state, source)
    if not strict:
        state = {k: v for k, v in state.items() if k in expected}
    return dict(state)
