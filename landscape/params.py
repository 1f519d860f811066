"""Named-parameter views of a model: which tensors count, flat vectors, filters.

A *state* here is a mapping from names (as in ``model.named_parameters()`` or
``model.state_dict()``) to tensors. Directions, checkpoints and perturbed points
are all states, so every routine in the library speaks the same language.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from ._hashing import state_sha256
from .checks import check_state
from .options import DirTypeName
from .shards import dot64 as shard_dot64
from .shards import is_dtensor

DirType = DirTypeName  # the Literal alias of landscape.options.DirType

#: A selection of tensors (see :func:`select_names`): ``None`` or ``"all"``, ``"trainable"``,
#: names and glob patterns (one string or several), or a predicate ``(name, tensor) -> bool``.
ParamSelection = str | Iterable[str] | Callable[[str, torch.Tensor], bool] | None

__all__ = [
    "DirType",
    "ParamSelection",
    "model_state",
    "model_device_dtype",
    "tied_names",
    "merge_tied",
    "expand_tied",
    "select_names",
    "select_params",
    "selection_attr",
    "flatten",
    "unflatten",
    "state_dot",
    "axpy",
    "end_index",
    "lerp_coefficient",
    "point_state",
    "state_sha256",
]


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """The one device and floating dtype of a model's parameters.

    Raises:
        ValueError: if the model has no parameters, or parameters on several devices
            or of several floating dtypes.

    Example:
        >>> model_device_dtype(nn.Linear(2, 1))
        (device(type='cpu'), torch.float32)
    """
    params = list(model.parameters())
    if not params:
        raise ValueError("expected a model with parameters, got one with none")
    devices = {p.device for p in params}
    dtypes = {p.dtype for p in params if p.is_floating_point()}
    if len(devices) > 1 or len(dtypes) > 1:
        raise ValueError(
            f"expected all parameters on one device with one dtype, got devices "
            f"{sorted(map(str, devices))} and dtypes {sorted(map(str, dtypes))}; "
            "move the model with model.to(device, dtype) first"
        )
    return devices.pop(), dtypes.pop()


def model_state(
    model: nn.Module, dir_type: DirType = "weights", *, copy: bool = True
) -> dict[str, torch.Tensor]:
    """Detached copies of a model's parameters ("weights") or parameters and buffers ("states");
    with ``copy=False``, detached tensors sharing the model's memory.

    Integer buffers (BatchNorm's ``num_batches_tracked``) are included with "states" so
    that a state is complete, but directions leave them alone. A tied tensor (one
    tensor under several names, as a language model's embedding and output head) is one
    entry, under its first name, as ``model.named_parameters()`` gives it.

    Example:
        >>> sorted(model_state(nn.BatchNorm1d(3), "states"))  # doctest: +NORMALIZE_WHITESPACE
        ['bias', 'num_batches_tracked', 'running_mean', 'running_var', 'weight']
    """
    if dir_type == "weights":
        items = dict(model.named_parameters())
    elif dir_type == "states":
        tied = tied_names(model)
        items = {n: t for n, t in model.state_dict(keep_vars=True).items() if n not in tied}
    else:
        raise ValueError(f"expected one of 'weights', 'states' for dir_type, got {dir_type!r}")
    return {name: t.detach().clone() if copy else t.detach() for name, t in items.items()}


def tied_names(model: nn.Module) -> dict[str, str]:
    """Each name of ``model.state_dict()`` whose tensor is the same object as that of an
    earlier name, mapped to the first name (the one ``model.named_parameters()`` gives).

    Example:
        >>> model = nn.ModuleDict({"emb": nn.Embedding(5, 2), "head": nn.Linear(2, 5)})
        >>> model.head.weight = model.emb.weight
        >>> tied_names(model)
        {'head.weight': 'emb.weight'}
    """
    first: dict[int, str] = {}
    tied = {}
    for name, t in model.state_dict(keep_vars=True).items():
        owner = first.setdefault(id(t), name)
        if owner != name:
            tied[name] = owner
    return tied


def merge_tied(
    state: Mapping[str, torch.Tensor], tied: Mapping[str, str]
) -> dict[str, torch.Tensor]:
    """``state`` with each tied tensor once, under its first name (``tied`` as from
    :func:`tied_names`); a state holding it under another of its names only is renamed.

    Raises:
        ValueError: two names of one tied tensor hold different values.

    Example:
        >>> merge_tied({"head.weight": torch.ones(2)}, {"head.weight": "emb.weight"})
        {'emb.weight': tensor([1., 1.])}
    """
    if not tied:
        return dict(state)
    out: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        first = tied.get(name, name)
        held = out.setdefault(first, t)
        if not _same_tensor(held, t) and not torch.equal(held, t):
            names = sorted(n for n in state if tied.get(n, n) == first)
            raise ValueError(
                f"{names} are one tied tensor in the model, but the state holds different "
                f"values for them; give it once (under {first!r}) or with equal values"
            )
    return out


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors are views of the same memory (as ``state_dict()`` gives a tied one)."""
    layout = (torch.Tensor.data_ptr, torch.Tensor.size, torch.Tensor.stride)
    return a.dtype == b.dtype and all(f(a) == f(b) for f in layout)


def expand_tied(
    state: Mapping[str, torch.Tensor], tied: Mapping[str, str]
) -> dict[str, torch.Tensor]:
    """``state`` with a tied tensor under every one of its names, as ``model.state_dict()``
    holds it (see :func:`merge_tied`, which it applies first).

    Example:
        >>> sorted(expand_tied({"head.weight": torch.ones(2)}, {"head.weight": "emb.weight"}))
        ['emb.weight', 'head.weight']
    """
    out = merge_tied(state, tied)
    for name, first in tied.items():
        if first in out:
            out[name] = out[first]
    return out


def select_names(state: Mapping[str, torch.Tensor], include: ParamSelection = None) -> list[str]:
    """Names of the floating-point tensors of ``state`` kept by a selection, in its order.

    The selection (``params=`` everywhere in the library) is ``None`` or ``"all"`` (every
    floating tensor), ``"trainable"`` (those with ``requires_grad``), a name or an
    :mod:`fnmatch` glob pattern (``"*.lora_*"``, ``"transformer.h.3.*"``), a collection of
    these (their union), or a predicate ``(name, tensor) -> bool`` such as
    ``lambda n, t: t.dim() > 1``.

    Raises:
        ValueError: a name or pattern matches no floating tensor (the message lists close
            names), or the selection keeps none.
        TypeError: a selection of another type.

    Example:
        >>> state = dict(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1)).named_parameters())
        >>> select_names(state, "*.weight"), select_names(state, ["1.bias"])
        (['0.weight', '1.weight'], ['1.bias'])
        >>> select_names(state, "0.wieght")
        Traceback (most recent call last):
        ...
        ValueError: params: '0.wieght' matches no tensor; close names: ['0.weight', '1.weight']
    """
    names = [n for n, t in state.items() if t.is_floating_point()]
    if include is None or include == "all":
        return names
    if callable(include):
        kept = [n for n in names if include(n, state[n])]
    elif isinstance(include, (str, Iterable)):
        patterns = [include] if isinstance(include, str) else list(include)
        if not all(isinstance(p, str) for p in patterns):
            raise TypeError(f"expected names or patterns (strings) for params, got {patterns!r}")
        wanted: set[str] = set()
        for pattern in patterns:
            if pattern in ("all", "trainable"):
                wanted.update(n for n in names if pattern == "all" or state[n].requires_grad)
                continue
            found = [n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern)]
            if not found:
                close = difflib.get_close_matches(pattern, names, n=5, cutoff=0.5)
                hint = f"close names: {close}" if close else f"the names begin {names[:5]}"
                raise ValueError(f"params: {pattern!r} matches no tensor; {hint}")
            wanted.update(found)
        kept = [n for n in names if n in wanted]
    else:
        raise TypeError(
            "expected None, 'all', 'trainable', names or glob patterns, or a callable "
            f"(name, tensor) -> bool for params, got {type(include).__name__}"
        )
    if not kept:
        raise ValueError(f"params {include!r} selected no tensor; expected at least one")
    return kept


def select_params(
    source: nn.Module | Mapping[str, torch.Tensor],
    params: ParamSelection = None,
    dir_type: DirType = "weights",
) -> list[str]:
    """:func:`select_names` over a model's weights (``dir_type="weights"``) or weights and
    buffers (``"states"``), its live tensors, so ``"trainable"`` sees ``requires_grad``; a
    mapping is taken as it is.

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
        >>> _ = model[0].requires_grad_(False)
        >>> select_params(model, "trainable")
        ['1.weight', '1.bias']
    """
    if isinstance(source, nn.Module):
        if dir_type == "weights":
            state = dict(source.named_parameters())
        else:
            tied = tied_names(source)
            state = {n: t for n, t in source.state_dict(keep_vars=True).items() if n not in tied}
        return select_names(state, params)
    return select_names(source, params)


def selection_attr(selected: Sequence[str], state: Mapping[str, torch.Tensor]) -> str | list[str]:
    """How a selection is recorded (in files and settings): ``"all"`` when it keeps every
    floating tensor of ``state``, else the list of the names it keeps.

    Example:
        >>> state = {"a": torch.zeros(1), "b": torch.zeros(1)}
        >>> selection_attr(["a", "b"], state), selection_attr(["b"], state)
        ('all', ['b'])
    """
    every = [n for n, t in state.items() if t.is_floating_point()]
    return "all" if set(selected) == set(every) else list(selected)


def flatten(state: Mapping[str, torch.Tensor], names: Iterable[str] | None = None) -> torch.Tensor:
    """One flat vector of the named tensors, in the given order (default: the mapping's)."""
    names = list(state) if names is None else list(names)
    return torch.cat([state[n].reshape(-1) for n in names])


def unflatten(
    vector: torch.Tensor, like: Mapping[str, torch.Tensor], names: Iterable[str] | None = None
) -> dict[str, torch.Tensor]:
    """Split a flat vector back into tensors shaped like ``like[name]``."""
    names = list(like) if names is None else list(names)
    sizes = [like[n].numel() for n in names]
    if vector.numel() != sum(sizes):
        raise ValueError(f"expected a vector of {sum(sizes)} entries, got {vector.numel()}")
    parts = torch.split(vector, sizes)
    return {n: p.reshape(like[n].shape) for n, p in zip(names, parts, strict=True)}


def state_dot(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """Inner product of two states over their shared floating tensors, in float64."""
    total = 0.0
    for name, t in a.items():
        if name in b and t.is_floating_point():
            if is_dtensor(t):  # a sharded model's: pieces' dots reduced over the mesh
                total += shard_dot64(t, b[name])
            else:
                total += float((t.double() * b[name].double()).sum())
    return total


def axpy(
    base: Mapping[str, torch.Tensor],
    terms: Iterable[tuple[float, Mapping[str, torch.Tensor]]],
) -> dict[str, torch.Tensor]:
    """``base + sum(c * d for c, d in terms)``, tensor by tensor; names absent from a term
    are left as in ``base``, integer tensors are never moved.

    Zero coefficients are skipped, so a point with all coordinates 0 *is* ``base``.
    """
    out = dict(base)
    for coef, direction in terms:
        if coef == 0:
            continue
        for name, d in direction.items():
            t = out[name]
            if t.is_floating_point():
                out[name] = t + coef * d.to(device=t.device, dtype=t.dtype)
    return out


def lerp_coefficient(coef: float) -> tuple[bool, float]:
    """How a point at ``coef`` along a direction ``d = end - base`` with a known end is formed:
    ``(False, coef)`` for ``base + coef * d`` when ``coef < 0.5``, ``(True, coef - 1)`` for
    ``end + (coef - 1) * d`` otherwise (the rule of :func:`torch.lerp`), so the point is
    ``base`` bit for bit at 0 and ``end`` bit for bit at 1.

    Example:
        >>> lerp_coefficient(0.25), lerp_coefficient(1.0)
        ((False, 0.25), (True, 0.0))
    """
    coef = float(coef)
    return (True, coef - 1.0) if coef >= 0.5 else (False, coef)


def end_index(
    ends: Sequence[Mapping[str, torch.Tensor] | None] | None, num_directions: int
) -> int | None:
    """The index of the one direction that carries an end state, or None.

    Raises:
        ValueError: ``ends`` is not one entry a direction, or more than one entry is set.
    """
    if ends is None:
        return None
    ends = list(ends)
    if len(ends) != num_directions:
        raise ValueError(
            f"expected one end (or None) per direction, {num_directions}, got {len(ends)}"
        )
    given = [j for j, end in enumerate(ends) if end is not None]
    if len(given) > 1:
        raise ValueError(
            f"expected at most one direction with an end state (an interpolation), got {len(given)}"
        )
    return given[0] if given else None


def point_state(
    base: Mapping[str, torch.Tensor],
    directions: Sequence[Mapping[str, torch.Tensor]],
    coords: Sequence[float],
    *,
    ends: Sequence[Mapping[str, torch.Tensor] | None] | None = None,
) -> dict[str, torch.Tensor]:
    """The state at one point ``base + sum_j coords[j] * directions[j]``, tensor by tensor.

    This is the one definition of a point that every evaluation path reproduces bit for
    bit. Without ends it is :func:`axpy`. A direction ``j`` with an end state
    ``ends[j]`` (an interpolation, ``directions[j] = ends[j] - base``) forms its names
    by :func:`lerp_coefficient`: ``base + c d`` below ``c = 0.5``, ``end + (c - 1) d``
    from there on, so ``c = 1`` gives the end state exactly (the end must hold every name
    its direction moves); its term comes first, the other directions' terms are added
    after it in order. Zero coefficients are skipped,
    names outside a direction and integer tensors are left as in ``base``.

    Example:
        >>> a, b = {"w": torch.tensor([0.1])}, {"w": torch.tensor([0.7])}
        >>> d = {"w": b["w"] - a["w"]}
        >>> torch.equal(point_state(a, [d], [1.0], ends=[b])["w"], b["w"])
        True
    """
    j_end = end_index(ends, len(directions))
    coords = [float(c) for c in coords]
    if len(coords) != len(directions):
        raise ValueError(f"expected {len(directions)} coordinates, got {len(coords)}")
    out = dict(base)
    end = None if ends is None or j_end is None else ends[j_end]
    if j_end is not None and end is not None:  # end_index: the one direction with an end
        from_end, coef = lerp_coefficient(coords[j_end])
        check_state(end, directions[j_end], name="the end state", against="its direction",
                    unexpected=False)  # fmt: skip
        if from_end:
            for name in directions[j_end]:
                t = out[name]
                if t.is_floating_point():
                    out[name] = end[name].to(device=t.device, dtype=t.dtype)
        coords[j_end] = coef
        order = [j_end, *(j for j in range(len(directions)) if j != j_end)]
    else:
        order = list(range(len(directions)))
    return axpy(out, [(coords[j], directions[j]) for j in order])
