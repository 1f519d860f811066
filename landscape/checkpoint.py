"""Safe checkpoint loading, key/shape matching with clear errors, and saving.

Checkpoints are read with ``torch.load(..., weights_only=True, map_location="cpu")``, which
never runs code stored in the file, or with the ``safetensors`` package for ``.safetensors``
files. The usual wrappers (``{"state_dict": ...}``, ``{"model": ...}``,
``{"model_state_dict": ...}``) are opened, and the ``module.`` prefix that
``DataParallel``/``DistributedDataParallel`` add (and the ``_orig_mod.`` prefix of
``torch.compile``) is stripped when every key has it.

:func:`load_checkpoint` loads into the given model, as ``load_state_dict`` does, after
checking every name, shape and dtype (so a refused checkpoint leaves the model as it was);
``copy=True`` loads into a deep copy instead.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
import re
import stat
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .params import expand_tied, tied_names

__all__ = [
    "load_state",
    "load_checkpoint",
    "checkpoint_state",
    "save_checkpoint",
    "file_sha256",
    "state_from_object",
]

PathLike = str | os.PathLike

#: Keys under which training scripts commonly nest the model's state_dict, tried in order.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")

#: Prefixes added by DataParallel/DistributedDataParallel and torch.compile.
STRIP_PREFIXES = ("module.", "_orig_mod.")

_MAX_LISTED = 10  # names listed per kind of mismatch before "... and N more"


# ---------------------------------------------------------------- helpers
def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    if len(items) > _MAX_LISTED:
        shown += f", ... and {len(items) - _MAX_LISTED} more"
    return shown


def _describe(obj: Any) -> str:
    """A short description of what a file held, for error messages."""
    if isinstance(obj, Mapping):
        keys = [f"{k!r}: {type(v).__name__}" for k, v in obj.items()]
        return f"a {type(obj).__name__} with top-level keys {{{_listing(keys)}}}"
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


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _check_dtypes(
    expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], source: str
) -> None:
    """Refuse int, bool or complex tensors for the model's floating tensors (the cast
    would make them zeros or drop parts); warn about float-to-float casts."""
    refused: list[str] = []
    cast: list[str] = []
    for name, want in expected.items():
        got = state.get(name)
        if got is None or got.dtype == want.dtype or not want.is_floating_point():
            continue
        entry = f"{name} ({_dtype(got)} into {_dtype(want)})"
        (cast if got.is_floating_point() else refused).append(entry)
    if refused:
        raise ValueError(
            f"{source} holds non-floating tensors for the model's floating ones: "
            f"{_listing(refused)}; loading them would cast silently. Save the checkpoint "
            "from the trained model's float state_dict"
        )
    if cast:
        warnings.warn(
            f"{source}: tensors cast to the model's dtype: {_listing(cast)}",
            UserWarning,
            stacklevel=3,
        )


# ---------------------------------------------------------------- public API
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
        >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.pt")
        >>> torch.save({"model": nn.Linear(2, 1).state_dict(), "epoch": 3}, path)
        >>> sorted(load_state(path))
        ['bias', 'weight']
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
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


# The mismatch error's hint; the command line says it as its option (--no-strict).
STRICT_HINT = ", or pass strict=False to allow missing/unexpected keys"


def _match_report(
    expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor], *, strict: bool
) -> str | None:
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    misshaped = [
        f"{k}: expected {tuple(expected[k].shape)}, got {tuple(got[k].shape)}"
        for k in expected
        if k in got and tuple(expected[k].shape) != tuple(got[k].shape)
    ]
    parts = []
    if strict and missing:
        parts.append(f"missing keys ({len(missing)}): {_listing(missing)}")
    if strict and unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
    if misshaped:
        parts.append(f"mis-shaped keys ({len(misshaped)}): {_listing(misshaped)}")
    return "; ".join(parts) if parts else None


_deepcopy = copy.deepcopy  # ``copy`` is load_checkpoint's option inside its body


def load_checkpoint(
    model: nn.Module,
    path_or_state: PathLike | Mapping[str, Any],
    *,
    strict: bool = True,
    copy: bool = False,
) -> nn.Module:
    """Load a checkpoint into ``model`` (in place, like ``load_state_dict``) and return it.

    The checkpoint is checked in full before any value is written, so a checkpoint that is
    refused leaves ``model`` as it was. Before version 0.3 this returned a loaded copy and
    left ``model`` unchanged; ``copy=True`` keeps that behaviour.

    Args:
        model: the architecture to load into; it keeps its device, dtype and train/eval mode.
        path_or_state: a checkpoint file (see :func:`load_state`) or an already loaded
            state_dict (or a mapping holding one under the usual keys).
        strict: require the checkpoint's names to be exactly the model's. With
            ``strict=False`` missing and unexpected names are allowed (missing ones keep the
            model's values); mis-shaped tensors are an error either way.
        copy: load into a deep copy of ``model`` and leave ``model`` unchanged (for loading
            several checkpoints from one architecture).

    Returns:
        ``model`` itself holding the checkpoint's values, or with ``copy=True`` a new
        ``nn.Module``.

    Raises:
        TypeError: if ``model`` is not an ``nn.Module``, ``path_or_state`` is neither a path
            nor a mapping, or ``copy`` is not a bool.
        FileNotFoundError: if the file does not exist.
        ValueError: if the file cannot be read safely, or its names or shapes do not match
            the model (the message lists missing, unexpected and mis-shaped keys), holds
            int, bool or complex tensors for floating ones, or holds different values under
            two names of one tied tensor. A float tensor of another precision (float16 or
            float64 into float32) is cast, with a warning naming it.

    Example:
        >>> model = nn.Linear(2, 1)
        >>> state = {"weight": torch.ones(1, 2), "bias": torch.zeros(1)}
        >>> load_checkpoint(model, state) is model, model.weight.tolist()
        (True, [[1.0, 1.0]])
        >>> other = load_checkpoint(model, {"weight": torch.zeros(1, 2),
        ...                                 "bias": torch.zeros(1)}, copy=True)
        >>> other is model, other.weight.tolist(), model.weight.tolist()
        (False, [[0.0, 0.0]], [[1.0, 1.0]])
    """
    if not isinstance(copy, bool):
        raise TypeError(f"copy must be True or False, got {type(copy).__name__}")
    state = checkpoint_state(model, path_or_state, strict=strict)
    target = _deepcopy(model) if copy else model
    target.load_state_dict(state, strict=strict)
    return target


def checkpoint_state(
    model: nn.Module,
    path_or_state: PathLike | Mapping[str, Any],
    *,
    strict: bool = True,
) -> dict[str, torch.Tensor]:
    """A checkpoint's state, checked against ``model``'s names and shapes, without copying
    the model (what :func:`load_checkpoint` loads into its copy).

    Args and Raises: as for :func:`load_checkpoint`; with ``strict=False`` the names the
    model lacks are dropped. A tensor the model ties under several names (an embedding and
    an output head) may be held under any one of them, as ``safetensors.torch.save_model``
    writes it; it is returned under all of them.

    Example:
        >>> state = checkpoint_state(nn.Linear(2, 1), {"weight": torch.ones(1, 2),
        ...                                            "bias": torch.zeros(1)})
        >>> sorted(state)
        ['bias', 'weight']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(path_or_state, (str, os.PathLike)):
        state = load_state(path_or_state)
        source = f"checkpoint {path_or_state}"
    elif isinstance(path_or_state, Mapping):
        state = state_from_object(path_or_state, source="the given state")
        source = "the given state"
    else:
        raise TypeError(
            "path_or_state must be a path or a state_dict mapping, "
            f"got {type(path_or_state).__name__}"
        )
    try:
        state = expand_tied(state, tied_names(model))
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None
    expected = model.state_dict()
    problem = _match_report(expected, state, strict=strict)
    if problem:
        raise ValueError(
            f"{source} does not match the model {type(model).__name__}: {problem}. "
            "Check that the model is built with the same architecture and settings as the one "
            "that was saved" + (STRICT_HINT if strict else "")
        )
    _check_dtypes(expected, state, source)
    if not strict:
        state = {k: v for k, v in state.items() if k in expected}
    return dict(state)


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
        raise TypeError(f"expected a mapping from str names to tensors, got {_listing(bad)}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
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
