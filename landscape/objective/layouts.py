"""Model layouts an :class:`~landscape.objective.Objective` refuses up front, and DDP unwrapping.

The Objective evaluates a private module through ``torch.func.functional_call`` with the
whole state on one device. Parameters split across ranks or devices break that silently:
FSDP's pre-forward unshard puts its own parameters back (the checkpoint's value at a moved
point), a tensor-parallel module mixes local shards and full tensors. Until such layouts
are supported they are refused at construction, in one line naming the layout and the
workaround: gather the full state dict and load it into an unsharded model.

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

WORKAROUND = (
    "; gather it into an unsharded model first: model.load_state_dict(torch.distributed."
    "checkpoint.state_dict.get_model_state_dict(sharded, options=StateDictOptions("
    "full_state_dict=True)))"
)


def _dtensor_type() -> type | None:
    """DTensor, if torch.distributed.tensor is loaded (no DTensor exists before: importing
    it costs about a second, so it is never imported here)."""
    return getattr(sys.modules.get("torch.distributed.tensor"), "DTensor", None)


def _fsdp_types() -> tuple[type, ...]:
    """FSDP2's and FSDP1's module classes, among those loaded (see :func:`_dtensor_type`)."""
    fsdp = sys.modules.get("torch.distributed.fsdp")
    found = (getattr(fsdp, "FSDPModule", None), getattr(fsdp, "FullyShardedDataParallel", None))
    return tuple(t for t in found if t is not None)


def tensors_problem(named: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """A line naming the first sharded tensor (DTensor, DeepSpeed ZeRO-3 placeholder), or None."""
    dtensor = _dtensor_type()
    for name, t in named:
        if dtensor is not None and isinstance(t, dtensor):
            placements = ", ".join(type(p).__name__ for p in getattr(t, "placements", ()))
            return (
                f"expected plain tensors, got {name!r} as a DTensor ({placements}: FSDP2 "
                "fully_shard or tensor parallel); sharded models are not supported yet" + WORKAROUND
            )
        if hasattr(t, "ds_id") or hasattr(t, "ds_numel"):
            return (
                f"expected plain tensors, got {name!r} as a DeepSpeed ZeRO-3 partitioned "
                "parameter; ZeRO-3 models are not supported yet; gather it into an unsharded "
                "model first (DeepSpeed's zero_to_fp32 state dict, loaded with "
                "model.load_state_dict)"
            )
    return None


def layout_problem(model: nn.Module) -> str | None:
    """A line naming a layout the Objective cannot evaluate exactly, or None.

    Refused: parameters or buffers that are DTensors (FSDP2, tensor/sequence parallel),
    modules wrapped by FSDP (hooks that put their own parameters back), DeepSpeed ZeRO-3
    partitioned parameters, and a Hugging Face ``hf_device_map`` over several devices.
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
    fsdp = _fsdp_types()
    for name, module in model.named_modules():
        if fsdp and isinstance(module, fsdp):
            return (
                f"expected a model without FSDP, got {name or 'the model'!r} wrapped by "
                f"{type(module).__name__} (its hooks put their own parameters back); "
                "sharded models are not supported yet" + WORKAROUND
            )
    return tensors_problem([*model.named_parameters(), *model.named_buffers()])


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
