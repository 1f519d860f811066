"""What defines a model's function, fingerprinted so that a resume cannot mix two models.

Three records join ``model_sha256`` (each submodule's name, class, ``extra_repr`` and
``forward`` source):

- ``model_classes_sha256``: the whole source of every class in each submodule's MRO, up
  to torch's (so a parent class's ``forward`` or an ``__init__`` counts);
- ``builder_sha256`` (command line): the source of the ``--model`` callable, which holds
  the builder's arguments (``MLP()`` -> ``MLP(act="tanh")``);
- ``model_probe``: the model's first outputs on the evaluation data's first batch at the
  checkpoint, stored as numbers and compared with a tolerance (``PROBE_RTOL`` of the
  largest output), so that bit-level differences between thread counts or devices never
  refuse a resume while a changed function does.

Files without these records (made before them) resume with the older checks.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from .objective import Objective, prediction

__all__ = [
    "FINGERPRINT_ATTRS",
    "PROBE_SIZE",
    "builder_sha256",
    "classes_sha256",
    "model_probe",
    "probe_problem",
]

FINGERPRINT_ATTRS = ("model_classes_sha256", "builder_sha256", "model_probe")
"""Identity attributes added in 0.3 (older files lack them and are not checked on them)."""
PROBE_SIZE = 32
"""The number of output values a probe keeps (the first examples' outputs)."""
PROBE_RTOL = {"fp32": 1e-4, "tf32": 2e-2, "bf16": 2e-2}
"""Allowed difference of two probes, relative to their largest output, by precision."""


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):  # defined in a REPL, or a builtin: its name only
        return getattr(obj, "__qualname__", repr(obj))


def classes_sha256(model: nn.Module) -> str:
    """A fingerprint of the source of every class in the MRO of each submodule, up to
    torch's own classes.

    Example:
        >>> len(classes_sha256(nn.Linear(2, 2)))
        64
    """
    found: dict[str, str] = {}
    for module in model.modules():
        for cls in type(module).__mro__:
            if cls is object or cls.__module__.split(".")[0] == "torch":
                break
            key = f"{cls.__module__}.{cls.__qualname__}"
            if key not in found:
                found[key] = _source(cls)
    h = hashlib.sha256()
    for key in sorted(found):
        h.update(f"{key}\n{found[key]}\n".encode())
    return h.hexdigest()


def builder_sha256(build: Callable[..., Any]) -> str:
    """A fingerprint of a model builder: its source (a ``functools.partial``'s function
    source and arguments)."""
    parts = []
    while isinstance(build, functools.partial):
        parts.append(repr((build.args, sorted(build.keywords.items()))))
        build = build.func
    parts.append(_source(build))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def model_probe(objective: Objective) -> list[float]:
    """The first :data:`PROBE_SIZE` outputs of the model at the objective's base state on
    the first batch of its data (the loss sum for a ``batch_loss`` closure), as floats.

    In eval mode the model runs on the batch's first :data:`PROBE_SIZE` examples only (an
    example's outputs do not depend on the others there): a small share of a pass, where
    the whole batch was an extra pass per surface."""
    batch = next(iter(objective.batches()), None)
    if batch is None:
        return []
    if not objective.train_mode and objective.batch_loss is None:
        batch = _head(batch, PROBE_SIZE)
    with torch.no_grad():
        outputs = objective._call(objective.full_state(None), batch)
    value = outputs[0] if objective.batch_loss is not None else prediction(outputs)
    if not isinstance(value, torch.Tensor):
        return []
    flat = value.detach().reshape(-1)[:PROBE_SIZE]
    return flat.to(device="cpu", dtype=torch.float64).tolist()


def _head(batch: Any, num: int) -> Any:
    """The first ``num`` examples of a batch of tensors sharing their first dimension (a
    pair or a mapping); the batch itself otherwise."""
    parts = list(batch.values()) if isinstance(batch, Mapping) else batch
    if not isinstance(parts, (tuple, list)) or not parts:
        return batch
    if not all(isinstance(t, torch.Tensor) and t.dim() > 0 for t in parts):
        return batch
    size = parts[0].shape[0]
    if size <= num or any(t.shape[0] != size for t in parts):
        return batch
    if isinstance(batch, Mapping):
        return {k: t[:num] for k, t in batch.items()}
    return type(batch)(t[:num] for t in batch)


def probe_problem(stored: Any, run: list[float], precision: str) -> str | None:
    """Why a stored probe and a run's differ (None if they agree within tolerance)."""
    a = np.asarray(stored, dtype=np.float64).reshape(-1)
    b = np.asarray(run, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        return f"model_probe: file has {a.size} outputs, run has {b.size}"
    both = np.concatenate([a, b])
    finite = both[np.isfinite(both)]
    scale = float(np.abs(finite).max()) if finite.size else 0.0
    tol = PROBE_RTOL.get(precision, 2e-2) * scale
    with np.errstate(invalid="ignore"):
        same = (a == b) | (np.isnan(a) & np.isnan(b)) | (np.abs(a - b) <= tol)
    if same.all():
        return None
    worst = float(np.nanmax(np.where(same, 0.0, np.abs(a - b)))) if (~same).any() else 0.0
    return (
        f"model_probe: the model's outputs on the first batch differ from the file's by up "
        f"to {worst:.3g} (allowed {tol:.3g}): the model computes another function"
    )
