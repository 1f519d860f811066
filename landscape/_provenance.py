"""Where a result came from: the fingerprints and names every result file records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .objective import Objective
from .params import state_sha256


def provenance(
    objective: Objective, state: Mapping[str, torch.Tensor] | None = None
) -> dict[str, Any]:
    """The model's class name, the fingerprint of the point (``checkpoint_sha256``, of the
    full state as :func:`~landscape.params.state_sha256` gives it; default the objective's
    base state), the data's (``data_sha256``, ``num_examples``) and how the loss is taken
    (``loss_name``, ``train_mode``, ``precision``)."""
    return {
        "model": type(objective.model).__qualname__,
        "checkpoint_sha256": state_sha256(objective.full_state(state)),
        "data_sha256": objective.data_sha256(),
        "num_examples": objective.num_examples,
        "loss_name": objective.loss_name,
        "train_mode": objective.train_mode,
        "precision": objective.precision,
    }
