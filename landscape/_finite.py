"""Non-finite inputs are refused before any work; non-finite results are counted.

A NaN weight, or one NaN in the data, makes every value of a surface NaN and every
measure NaN. The inputs (a checkpoint's tensors, the first batch of the data) are checked
once, with one read of the device per device, and refused in one line naming the tensor
or the batch; ``allow_nonfinite=True`` (CLI: ``--allow-nonfinite``) goes on on purpose.
Non-finite *results* are kept as they are (never replaced) and counted for the report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["check_finite_inputs", "count_nonfinite", "nonfinite_note", "nonfinite_problem"]

_HOW = "fix the input, or pass allow_nonfinite=True (CLI: --allow-nonfinite) to go on"


def _tensors(value: Any, where: str) -> Iterable[tuple[str, torch.Tensor]]:
    """The floating tensors in a batch (tensors, tuples, lists, mappings), by position."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex():
            yield where, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _tensors(item, f"{where}[{key!r}]")
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from _tensors(item, f"{where}[{i}]")


def nonfinite_problem(
    state: Mapping[str, torch.Tensor],
    *,
    buffers: Iterable[str] = (),
    batch: Any = None,
    what: str = "the checkpoint",
) -> str | None:
    """The first non-finite input, in one line (None if all are finite).

    Parameters may hold neither NaN nor inf; buffers may hold infinities (attention masks
    of ``-inf``) but no NaN. Every floating tensor of ``batch`` (the data's first batch)
    must be finite. One host read per device.

    Example:
        >>> nonfinite_problem({"w": torch.tensor([1.0, float("nan")])}) is not None
        True
    """
    buffers = set(buffers)
    named: list[tuple[str, torch.Tensor, bool]] = []
    for name, tensor in state.items():
        if tensor.is_floating_point() or tensor.is_complex():
            kind = "buffer" if name in buffers else "parameter"
            named.append((f"{kind} {name!r} of {what}", tensor, name in buffers))
    if batch is not None:
        named += [(f"{where} of the first batch of the data", t, False)
                  for where, t in _tensors(batch, "batch")]  # fmt: skip
    by_device: dict[torch.device, list[int]] = {}
    for i, (_, tensor, _) in enumerate(named):
        by_device.setdefault(tensor.device, []).append(i)
    counts: dict[int, tuple[int, int]] = {}
    for indices in by_device.values():
        with torch.no_grad():
            sums = [
                torch.stack([torch.isnan(t).sum(), torch.isinf(t).sum()])
                for t in (named[i][1].detach() for i in indices)
            ]
            for i, (nan, inf) in zip(indices, torch.stack(sums).tolist(), strict=True):
                counts[i] = (nan, 0 if named[i][2] else inf)
    bad = [i for i in range(len(named)) if sum(counts[i])]
    if not bad:
        return None
    label, tensor, _ = named[bad[0]]
    nan, inf = counts[bad[0]]
    more = f" (and {len(bad) - 1} more tensor(s))" if len(bad) > 1 else ""
    return (
        f"expected finite inputs, got {nan:,} NaN and {inf:,} inf among the {tensor.numel():,} "
        f"values of {label}{more}; {_HOW}"
    )


def check_finite_inputs(
    state: Mapping[str, torch.Tensor],
    *,
    buffers: Iterable[str] = (),
    batch: Any = None,
    what: str = "the checkpoint",
) -> None:
    """Raise ValueError with :func:`nonfinite_problem`'s line, if any."""
    problem = nonfinite_problem(state, buffers=buffers, batch=batch, what=what)
    if problem:
        raise ValueError(problem)


def count_nonfinite(values: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """``{name: (non-finite, total)}`` of arrays or numbers, for those with any."""
    out = {}
    for name, value in values.items():
        array = np.asarray(value, dtype=np.float64)
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            out[name] = (bad, int(array.size))
    return out


def nonfinite_note(values: Mapping[str, Any]) -> str | None:
    """One line counting the non-finite values of results (None if there are none).

    Example:
        >>> nonfinite_note({"loss": [1.0, float("nan")], "accuracy": [1.0, 0.5]})
        'non-finite results, kept as they are: loss at 1 of 2 values'
    """
    found = count_nonfinite(values)
    if not found:
        return None
    parts = [f"{name} at {bad:,} of {total:,} values" for name, (bad, total) in found.items()]
    return "non-finite results, kept as they are: " + "; ".join(parts)
