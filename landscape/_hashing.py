"""Fingerprints of states, for the stored files and the checks on resume (imports torch only,
so that :mod:`landscape.storage` can use it; :mod:`landscape.params` re-exports it)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch

__all__ = ["state_sha256"]


def state_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """A fingerprint of a state: names, dtypes, shapes and bytes, in sorted name order."""
    h = hashlib.sha256()
    piece = 2**24  # bytes read at a time: no copy of a CPU tensor, one piece of another
    for name in sorted(state):
        t = state[name].detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        data = t.contiguous().reshape(-1).view(torch.uint8)
        for lo in range(0, data.numel(), piece):
            h.update(data[lo : lo + piece].cpu().numpy().data)
    return h.hexdigest()
