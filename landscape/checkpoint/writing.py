"""Writing a state_dict to a checkpoint file, and a file's SHA-256."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checks import listing
from .reading import PathLike

__all__ = ["file_sha256", "save_checkpoint"]


def save_checkpoint(model_or_state: nn.Module | Mapping[str, torch.Tensor], path: PathLike) -> Path:
    """Write a plain state_dict: ``torch.save`` format, or safetensors for ``.safetensors``.

    Tensors are written detached, on the CPU. The file is written to a temporary name
    and renamed, so a reader never sees half a file; missing parent folders are created.

    Args:
        model_or_state: a model (its ``state_dict()`` is saved) or a mapping from names to
            tensors.
        path: where to write; a ``.safetensors`` extension selects that format.

    Returns:
        The path written, as a ``Path``.

    Raises:
        TypeError: if ``model_or_state`` is neither a model nor a mapping of names to
            tensors, or ``path`` is not a path.

    Example:
        >>> import tempfile, os
        >>> from landscape.checkpoint import load_state
        >>> path = os.path.join(tempfile.mkdtemp(), "linear.safetensors")
        >>> sorted(load_state(save_checkpoint(nn.Linear(2, 1), path)))
        ['bias', 'weight']
    """
    if isinstance(model_or_state, nn.Module):
        source: Mapping[str, Any] = model_or_state.state_dict()
    elif isinstance(model_or_state, Mapping):
        source = model_or_state
    else:
        raise TypeError(
            f"expected an nn.Module or a state_dict mapping, got {type(model_or_state).__name__}"
        )
    bad = [
        f"{k!r}: {type(v).__name__}" for k, v in source.items() if not isinstance(v, torch.Tensor)
    ]
    bad += [f"{k!r} (not a str)" for k in source if not isinstance(k, str)]
    if bad:
        raise TypeError(f"expected a mapping from str names to tensors, got {listing(bad)}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"expected a str or os.PathLike path, got {type(path).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # safetensors refuses tensors sharing memory, so each one gets its own contiguous copy.
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in source.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, tmp)
        else:
            torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def file_sha256(path: PathLike, *, chunk_size: int = 1 << 20) -> str:
    """The SHA-256 hex digest of a file's bytes, read in chunks.

    Args:
        path: the file.
        chunk_size: bytes read at a time.

    Returns:
        64 lowercase hex characters.

    Raises:
        FileNotFoundError: if there is no file at ``path``.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "empty")
        >>> open(path, "wb").close()
        >>> file_sha256(path)[:16]
        'e3b0c44298fc1c14'
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected a file at {path}, found none")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()
