"""Model layouts an :class:`~landscape.objective.Objective` refuses up front, and DDP unwrapping.

A model whose parameters are DTensors (FSDP2 ``fully_shard``, tensor parallel through
``parallelize_module``), placed ``Shard(dim)`` or ``Replicate()`` on each mesh dimension,
is evaluated in place (see :mod:`landscape.objective.sharded`). Refused at construction,
in one line naming the layout and the workaround (gather the full state dict and load it
into an unsharded model): other DTensor placements (``Partial``, strided shards),
FSDP1's ``FullyShardedDataParallel`` (its hooks put their own parameters back), DeepSpeed
ZeRO-3 partitioned parameters and a Hugging Face ``device_map`` over several devices.

Example:
    >>> from torch import nn
    >>> model = nn.Linear(2, 1)
    >>> model.hf_device_map = {"": 0}  # one device: fine
    >>> layout_problem(model) is None
    True
    >>> model.hf_device_map = {"a": 0, "b": 1}
    >>> layout_problem(model).split(";")[0]
    'expected a model on one device, got a Hugging Face device_map over 2 devices (0, 1)'
"""

from __future__ import annotations

import sys
from collections.abc import Container, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from ..shards import is_dtensor, placement_problem

GATHER = (
    "gather it into an unsharded model first: model.load_state_dict(torch.distributed."
    "checkpoint.state_dict.get_model_state_dict(sharded, options=StateDictOptions("
    "full_state_dict=True)))"
)
WORKAROUND = "; " + GATHER


def _fsdp1_type() -> type | None:
    """FSDP1's module class, if loaded (never imported here: it costs about a second)."""
    return getattr(sys.modules.get("torch.distributed.fsdp"), "FullyShardedDataParallel", None)


def _zero3_problem(name: str, t: torch.Tensor) -> str | None:
    if hasattr(t, "ds_id") or hasattr(t, "ds_numel"):
        return (
            f"expected plain tensors, got {name!r} as a DeepSpeed ZeRO-3 partitioned "
            "parameter; ZeRO-3 models are not supported yet; gather it into an unsharded "
            "model first (DeepSpeed's zero_to_fp32 state dict, loaded with "
            "model.load_state_dict)"
        )
    return None


def tensors_problem(named: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """A line naming the first sharded tensor (DTensor, DeepSpeed ZeRO-3 placeholder) of a
    state given to :meth:`~landscape.objective.Objective.at`, or None."""
    for name, t in named:
        if is_dtensor(t):
            placements = ", ".join(type(p).__name__ for p in getattr(t, "placements", ()))
            return (
                f"expected plain tensors, got {name!r} as a DTensor ({placements}: FSDP2 "
                "fully_shard or tensor parallel); a sharded state cannot be loaded with "
                ".at() yet: evaluate the sharded model itself (Objective(sharded, data))"
                + WORKAROUND
            )
        problem = _zero3_problem(name, t)
        if problem:
            return problem
    return None


def layout_problem(model: nn.Module) -> str | None:
    """A line naming a layout the Objective cannot evaluate exactly, or None.

    Refused: DTensors placed other than ``Shard(dim)``/``Replicate()``, modules wrapped by
    FSDP1 (hooks that put their own parameters back), DeepSpeed ZeRO-3 partitioned
    parameters, and a Hugging Face ``hf_device_map`` over several devices. FSDP2 and
    tensor-parallel models pass (evaluated in place, :mod:`landscape.objective.sharded`).
    """
    device_map = getattr(model, "hf_device_map", None)
    if isinstance(device_map, Mapping):
        devices = {str(d) for d in device_map.values()}
        if len(devices) > 1:
            return (
                f"expected a model on one device, got a Hugging Face device_map over "
                f"{len(devices)} devices ({', '.join(sorted(devices))}); spread models are "
                "not supported yet; load the model on one device (device_map=None, or "
                "a single device)"
            )
    fsdp1 = _fsdp1_type()
    for name, module in model.named_modules():
        if fsdp1 is not None and isinstance(module, fsdp1):
            return (
                f"expected a model without FSDP1, got {name or 'the model'!r} wrapped by "
                f"{type(module).__name__} (its hooks put their own parameters back); "
                "FSDP1 models are not supported (FSDP2's fully_shard is)" + WORKAROUND
            )
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        problem = placement_problem(name, t) if is_dtensor(t) else _zero3_problem(name, t)
        if problem:
            return problem
    return None


def check_layout(model: nn.Module) -> None:
    """Raise ``ValueError`` with :func:`layout_problem`'s line, if any."""
    problem = layout_problem(model)
    if problem:
        raise ValueError(problem)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel`` (or ``DataParallel``); others as given.

    Example:
        >>> unwrap(nn.DataParallel(nn.Linear(2, 1))).__class__.__name__
        'Linear'
    """
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return model


def unprefixed(state: Mapping[str, Any], names: Container[str]) -> Mapping[str, Any]:
    """``state`` without the ``module.`` prefix of a DDP model's state_dict, where every name
    has it and none is among ``names`` (the model's); otherwise ``state`` as given.

    Example:
        >>> list(unprefixed({"module.weight": 1}, {"weight"}))
        ['weight']
    """
    prefix = "module."
    if state and all(k.startswith(prefix) and k not in names for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return state
