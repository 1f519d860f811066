"""Reading a checkpoint file's state_dict safely, on the CPU.

Checkpoints are read with ``torch.load(..., weights_only=True, map_location="cpu")``, which
never runs code stored in the file, or with the ``safetensors`` package for ``.safetensors``
files. The usual wrappers (``{"state_dict": ...}``, ``{"model": ...}``,
``{"model_state_dict": ...}``) are opened, and the ``module.`` prefix that
``DataParallel``/``DistributedDataParallel`` add (and the ``_orig_mod.`` prefix of
``torch.compile``) is stripped when every key has it.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..checks import listing

__all__ = ["PathLike", "STRIP_PREFIXES", "WRAPPER_KEYS", "load_state", "state_from_object"]

PathLike = str | os.PathLike

#: Keys under which training scripts commonly nest the model's state_dict, tried in order.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")

#: Prefixes added by DataParallel/DistributedDataParallel and torch.compile.
STRIP_PREFIXES = ("module.", "_orig_mod.")


def _describe(obj: Any) -> str:
    """A short description of what a file held, for error messages."""
    if isinstance(obj, Mapping):
        keys = [f"{k!r}: {type(v).__name__}" for k, v in obj.items()]
        return f"a {type(obj).__name__} with top-level keys {{{listing(keys)}}}"
    return f"a {type(obj).__name__}"


def _is_tensor_mapping(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    changed = True
    while changed:
        changed = False
        for prefix in STRIP_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


def state_from_object(obj: Any, *, source: str = "the checkpoint") -> dict[str, torch.Tensor]:
    """The state_dict inside a loaded checkpoint object.

    Args:
        obj: a raw state_dict (names to tensors), or a mapping holding one under
            ``"state_dict"``, ``"model_state_dict"`` or ``"model"``.
        source: what ``obj`` came from, for error messages.

    Returns:
        A new ``dict`` from names to tensors, with a ``module.`` (DataParallel/DDP) or
        ``_orig_mod.`` (torch.compile) prefix removed when every name has it.

    Raises:
        ValueError: if ``obj`` holds no state_dict; the message lists what it holds.

    Example:
        >>> state = {"module.weight": torch.zeros(2), "module.bias": torch.zeros(1)}
        >>> sorted(state_from_object({"state_dict": state}))
        ['bias', 'weight']
    """
    if _is_tensor_mapping(obj):
        return _strip_prefixes(dict(obj))
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if key in obj and _is_tensor_mapping(obj[key]):
                return _strip_prefixes(dict(obj[key]))
    raise ValueError(
        f"expected {source} to hold a state_dict (a mapping from parameter names to tensors, "
        f"possibly under one of the keys {list(WRAPPER_KEYS)}), got {_describe(obj)}"
    )


def _looks_like_safetensors(path: Path) -> bool:
    """A safetensors file starts with an 8-byte little-endian header length, then '{'
    (checked by content, whatever the file is named)."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little")


def _check_safetensors_size(path: Path) -> None:
    """Refuse a safetensors file shorter than its header says (a truncated copy)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = f.read(header_len) if header_len <= size else b""
    try:
        entries = json.loads(header)
        end = max((e["data_offsets"][1] for k, e in entries.items() if k != "__metadata__"),
                  default=0)  # fmt: skip
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        end = None
    if end is None or 8 + header_len + end > size:
        raise ValueError(
            f"{path} is a truncated safetensors file ({size} bytes, fewer than its header "
            "announces); copy or save it again"
        )


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    _check_safetensors_size(path)
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"could not read {path} as a safetensors file: {err}") from err


def _unreadable(path: Path, err: BaseException) -> ValueError:
    return ValueError(
        f"{path} is truncated or not a file torch.load can read ({type(err).__name__}: "
        f"{(str(err).splitlines() or ['no detail'])[0][:120]}); expected a complete file "
        "written by torch.save or safetensors"
    )


def _kind(path: str | os.PathLike) -> str:
    """What a path that is not a regular file is: a directory, a FIFO, a device, ..."""
    mode = os.stat(path).st_mode
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"))  # fmt: skip
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _load_torch(path: Path) -> Any:
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        # torch's wordings: "Unsupported global: GLOBAL x.y was not an allowed global" and
        # "Trying to load unsupported GLOBAL os.system whose module os is blocked"
        found = re.search(r"unsupported (?:global: )?GLOBAL (\S+)", str(err), re.IGNORECASE)
        if not found:  # a damaged or cut stream, not code
            raise _unreadable(path, err) from err
        raise ValueError(
            f"{path} holds code, not only tensors: it needs arbitrary pickled code to load (it "
            f"refers to {found.group(1)}), which landscape refuses because unpickling can run "
            "any code the file's author wrote. Expected a plain state_dict of tensors (e.g. "
            "torch.save(model.state_dict(), path)). If you trust the file, load it yourself "
            "with torch.load(path, weights_only=False), save its state_dict with "
            "landscape.save_checkpoint, and pass that file (or the state_dict) instead."
        ) from err
    except (
        RuntimeError, EOFError, OSError, KeyError, AttributeError, ImportError, IndexError,
        ValueError,
    ) as err:  # fmt: skip
        raise _unreadable(path, err) from err


def load_state(path: PathLike) -> dict[str, torch.Tensor]:
    """Load a checkpoint file's state_dict safely, on the CPU.

    ``.safetensors`` files (recognised by extension or by their header) are read with the
    ``safetensors`` package; anything else with ``torch.load(weights_only=True)``, which
    refuses pickled code instead of running it.

    Args:
        path: a file written by ``torch.save`` or ``safetensors``, holding a raw state_dict
            or one under ``"state_dict"``, ``"model_state_dict"`` or ``"model"``.

    Returns:
        A dict from names to CPU tensors, with a ``module.`` / ``_orig_mod.`` prefix shared
        by every name removed.

    Raises:
        TypeError: if ``path`` is not a string or path.
        FileNotFoundError: if there is no file at ``path``.
        ValueError: if the file needs arbitrary pickled code, is truncated or cannot be
            read, or holds no state_dict (the message lists its top-level keys).

    Example:
        >>> import tempfile, os
        >>> from torch import nn
        >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.pt")
        >>> torch.save({"model": nn.Linear(2, 1).state_dict(), "epoch": 3}, path)
        >>> sorted(load_state(path))
        ['bias', 'weight']
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"expected a str or os.PathLike path, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        if path.exists():  # never opened: a FIFO would block, /dev/zero never ends
            raise FileNotFoundError(
                f"{path} is not a regular file ({_kind(path)}); expected a checkpoint file"
            )
        raise FileNotFoundError(f"expected a checkpoint file at {path}, found no such file")
    if path.suffix == ".safetensors" or _looks_like_safetensors(path):
        state = _load_safetensors(path)
        if not state:
            raise ValueError(f"expected {path} to hold tensors, got an empty safetensors file")
        return _strip_prefixes(state)
    return state_from_object(_load_torch(path), source=str(path))
