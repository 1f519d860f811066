"""Where a result came from: the fingerprints and names every result file records."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .objective import Objective
from .objective.sharded import compute_dtypes
from .shards import state_sha256  # a sharded model's: every rank's pieces


def provenance(
    objective: Objective,
    state: Mapping[str, torch.Tensor] | None = None,
    *,
    checkpoint: bool = True,
) -> dict[str, Any]:
    """The model's class name, the fingerprint of the point (``checkpoint_sha256``, of the
    full state as :func:`~landscape.params.state_sha256` gives it, or for a sharded model
    :func:`landscape.shards.state_sha256` of every rank's pieces; default the objective's
    base state), the data's (``data_sha256``, ``num_examples``) and how the loss is taken
    (``loss_name``, ``train_mode``, ``precision``, and in train mode the ``objective_seed``
    of the model's random draws); for a sharded model its ``layout`` and, where FSDP2
    computes in another dtype (a ``MixedPrecisionPolicy``), ``compute_dtype``.
    ``checkpoint=False`` leaves ``checkpoint_sha256`` out (a pass over every weight; for a
    caller that records the point otherwise)."""
    seeded: dict[str, Any] = {"objective_seed": objective.seed} if objective.train_mode else {}
    if objective.sharded:
        seeded["layout"] = objective.sharded
        dtypes = compute_dtypes(objective.model)
        if dtypes:
            seeded["compute_dtype"] = ",".join(dtypes)
    return {
        "model": type(objective.model).__qualname__,
        **({"checkpoint_sha256": state_sha256(objective.full_state(state))} if checkpoint else {}),
        "data_sha256": objective.data_sha256(),
        "num_examples": objective.num_examples,
        "loss_name": objective.loss_name,
        "train_mode": objective.train_mode,
        "precision": objective.precision,
        **seeded,
    }


def model_sha256(model: nn.Module) -> str:
    """A fingerprint of a model's code and structure, not of its values: each submodule's
    name, class and ``extra_repr()`` (sizes, options), and the source of ``forward`` of
    classes defined outside torch (so ``relu`` -> ``tanh`` in a forward changes it).

    Example:
        >>> relu = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
        >>> model_sha256(relu) == model_sha256(nn.Sequential(nn.Linear(2, 2), nn.Tanh()))
        False
    """
    h = hashlib.sha256()
    sources: dict[type, str] = {}
    for name, module in model.named_modules():
        cls = type(module)
        if cls not in sources:
            sources[cls] = _forward_source(cls)
        h.update(f"{name}|{cls.__qualname__}|{module.extra_repr()}|{sources[cls]}\n".encode())
    return h.hexdigest()


def _forward_source(cls: type[nn.Module]) -> str:
    """The source of a user's ``cls.forward`` ("" for torch's classes or without a file)."""
    if cls.__module__.split(".")[0] == "torch":
        return ""
    try:
        return inspect.getsource(cls.forward)
    except (OSError, TypeError):
        return ""
