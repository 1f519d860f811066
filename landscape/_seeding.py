"""Where seeded draws are made: on the CPU in float64, or on the CUDA device of the tensors.

CPU draws are the same for a seed whatever the tensors' device and dtype. When the tensors
are on a CUDA device, the draws are made there (no host-to-device copy per draw) from a
``torch.Generator`` of that device, in float32 or the tensors' dtype if wider: they differ
from the CPU draws for the same seed, but are reproducible on the same kind of device (the
ranks of a sharded objective need GPUs of one model to draw alike).
"""

from __future__ import annotations

import torch

from .checks import check_seed


def seeded_generator(seed: int, device: torch.device | str) -> torch.Generator:
    """A ``torch.Generator`` seeded with ``seed``: on ``device`` if it is a CUDA device,
    else on the CPU.

    Example:
        >>> seeded_generator(0, "cpu").device
        device(type='cpu')
    """
    seed = check_seed(seed)  # a float or bool seed is a TypeError, not a truncated int
    device = torch.device(device)
    if device.type == "cuda":
        return torch.Generator(device=device).manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def draw_dtype(generator: torch.Generator, dtype: torch.dtype) -> torch.dtype:
    """The dtype to draw in for tensors of ``dtype``: float64 on the CPU, else float32 or
    ``dtype`` if wider.

    Example:
        >>> draw_dtype(torch.Generator(), torch.float16)
        torch.float64
    """
    if generator.device.type == "cpu":
        return torch.float64
    return torch.promote_types(dtype, torch.float32)
