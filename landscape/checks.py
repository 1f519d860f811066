"""Checks of arguments shared by every entry point, in one voice: ``"expected ..., got ..."``
naming the argument (a ``TypeError`` for a wrong type, else a ``ValueError``).

:func:`check_state` is the one check that a state (names to tensors) fits the names and
shapes of another (a model's ``state_dict``, the weights, a direction);
:func:`renamed_keywords` keeps the old names of renamed keyword arguments working.

Standard library and :mod:`landscape.options` only, so that any module (the command line
included) may use it.
"""

from __future__ import annotations

import functools
import numbers
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import Enum
from typing import Any, TypeVar, overload

from . import options

__all__ = [
    "check_choice",
    "check_count",
    "check_flag",
    "check_seed",
    "check_state",
    "listing",
    "renamed_keywords",
]

SEED_LIMIT = 2**63
MAX_LISTED = 10  # names listed per kind of mismatch before "... and N more"

_F = TypeVar("_F", bound=Callable[..., Any])


def _is_bool(value: Any) -> bool:
    # numpy's bool_ is no subclass of bool; it is told by its type name (no numpy import)
    return isinstance(value, bool) or type(value).__name__ == "bool_"


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not _is_bool(value)


def _shown(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def check_seed(seed: Any, name: str = "seed") -> int:
    """An integer seed in ``0 .. 2**63 - 1``, as an ``int``; a float (even 1.0), a bool or
    ``None`` is a ``TypeError`` (a function that documents ``None`` handles it first).

    Example:
        >>> check_seed(3)
        3
        >>> check_seed(1.5)  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        TypeError: expected an int seed, got float 1.5
    """
    if not _is_int(seed):
        raise TypeError(f"expected an int {name}, got {_shown(seed)}")
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"expected an int {name} in 0 .. 2**63 - 1, got {int(seed)}")
    return int(seed)


def check_count(value: Any, name: str, minimum: int = 1) -> int:
    """An integer of at least ``minimum``, as an ``int`` (``True`` is not a count).

    Example:
        >>> check_count(2, "num")
        2
    """
    if not _is_int(value):
        raise TypeError(f"expected an int {name}, got {_shown(value)}")
    if value < minimum:
        raise ValueError(f"expected an int {name} >= {minimum}, got {int(value)}")
    return int(value)


def check_flag(value: Any, name: str) -> bool:
    """``True`` or ``False`` (numpy's bools too), as a ``bool``.

    Example:
        >>> check_flag(True, "overwrite")
        True
    """
    if not _is_bool(value):
        raise TypeError(f"expected True or False for {name}, got {_shown(value)}")
    return bool(value)


_S = TypeVar("_S", bound=str)


# Typed per options enum: the value comes back as that option's Literal alias, so that it
# may be passed on to a function hinted with the alias.
@overload
def check_choice(value: Any, choices: type[options.Norm], name: str) -> options.NormName: ...
@overload
def check_choice(value: Any, choices: type[options.Ignore], name: str) -> options.IgnoreName: ...
@overload
def check_choice(value: Any, choices: type[options.DirType], name: str) -> options.DirTypeName: ...
@overload
def check_choice(
    value: Any, choices: type[options.Precision], name: str
) -> options.PrecisionName: ...
@overload
def check_choice(value: Any, choices: type[options.Which], name: str) -> options.WhichName: ...
@overload
def check_choice(
    value: Any, choices: type[options.AlignMethod], name: str
) -> options.AlignMethodName: ...
@overload
def check_choice(value: Any, choices: type[options.Repair], name: str) -> options.RepairName: ...
@overload
def check_choice(value: Any, choices: type[Enum], name: str) -> str: ...
@overload
def check_choice(value: Any, choices: Iterable[_S], name: str) -> _S: ...


def check_choice(value: Any, choices: type[Enum] | Iterable[str], name: str) -> str:
    """One of ``choices`` (an options enum or strings), as its plain ``str`` value (typed
    as the option's ``Literal`` alias, or as the type of the strings).

    Example:
        >>> from landscape.options import Norm
        >>> check_choice(Norm.LAYER, Norm, "norm")
        'layer'
        >>> check_choice("filters", Norm, "norm")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ValueError: expected one of 'filter', 'layer', 'weight', 'none' for norm, got 'filters'
    """
    if isinstance(choices, type) and issubclass(choices, Enum):
        allowed = tuple(str(member.value) for member in choices)
    else:
        allowed = tuple(choices)
    if isinstance(value, Enum):
        value = value.value
    if not isinstance(value, str) or value not in allowed:
        listed = ", ".join(repr(c) for c in allowed)
        raise ValueError(f"expected one of {listed} for {name}, got {value!r}")
    return str(value)


def listing(items: Sequence[str]) -> str:
    """Items joined by commas, the first :data:`MAX_LISTED` of them, then how many more.

    Example:
        >>> listing([f"w{i}" for i in range(12)])
        'w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, ... and 2 more'
    """
    shown = ", ".join(items[:MAX_LISTED])
    if len(items) > MAX_LISTED:
        shown += f", ... and {len(items) - MAX_LISTED} more"
    return shown


def _shape(tensor: Any) -> tuple[int, ...] | None:
    shape = getattr(tensor, "shape", None)
    return None if shape is None else tuple(shape)


def check_state(
    state: Mapping[str, Any],
    expected: Mapping[str, Any],
    *,
    name: str = "the state",
    against: str = "the model",
    missing: bool = True,
    unexpected: bool = True,
    hint: str = "",
) -> None:
    """Check that ``state`` has the names and shapes of ``expected`` (both mappings from
    names to tensors, or to anything with a ``shape``).

    Args:
        state: what came (a checkpoint, a direction, an end state, ...).
        expected: what it must fit (a model's ``state_dict``, the weights, ...).
        name, against: how the message calls the two.
        missing: refuse names of ``expected`` that ``state`` lacks.
        unexpected: refuse names of ``state`` that ``expected`` lacks.
        hint: added to the message (how to fix it).

    Raises:
        ValueError: ``"expected {name} to match the names and shapes of {against}, got
            missing keys (n): ...; unexpected keys (n): ...; mis-shaped keys (n): ..."``,
            each kind listing up to :data:`MAX_LISTED` names; shapes are compared for
            the names both hold.

    Example:
        >>> import torch
        >>> check_state({"w": torch.zeros(2)}, {"w": torch.zeros(3), "b": torch.zeros(1)})
        ... # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ValueError: expected the state to match the names and shapes of the model, got
        missing keys (1): b; mis-shaped keys (1): w: expected (3,), got (2,)
    """
    parts = []
    if missing:
        lacking = [k for k in expected if k not in state]
        if lacking:
            parts.append(f"missing keys ({len(lacking)}): {listing(lacking)}")
    if unexpected:
        extra = [k for k in state if k not in expected]
        if extra:
            parts.append(f"unexpected keys ({len(extra)}): {listing(extra)}")
    misshaped = [
        f"{k}: expected {_shape(expected[k])}, got {_shape(t)}"
        for k, t in state.items()
        if k in expected and _shape(t) != _shape(expected[k])
    ]
    if misshaped:
        parts.append(f"mis-shaped keys ({len(misshaped)}): {listing(misshaped)}")
    if parts:
        raise ValueError(
            f"expected {name} to match the names and shapes of {against}, "
            f"got {'; '.join(parts)}{hint}"
        )


def renamed_keywords(**renames: str) -> Callable[[_F], _F]:
    """A decorator that still accepts the old names of renamed keyword arguments
    (``old="new"``), each use with a ``DeprecationWarning``; giving both is a ``TypeError``.

    Example:
        >>> @renamed_keywords(num="num_points")
        ... def grid(*, num_points: int = 3) -> int:
        ...     return num_points
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", DeprecationWarning)
        ...     grid(num=5)
        5
    """

    def decorate(function: _F) -> _F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(
                        f"expected {new}= or its old name {old}=, got both "
                        f"({new}={kwargs[new]!r}, {old}={kwargs[old]!r})"
                    )
                warnings.warn(
                    f"{function.__qualname__}: {old}= is renamed {new}=; the old name will "
                    "be removed in a future version",
                    DeprecationWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
