"""Checks of arguments shared by every entry point, in one voice: ``"expected ..., got ..."``
naming the argument (a ``TypeError`` for a wrong type, else a ``ValueError``).

Standard library only, so that any module (the command line included) may use it.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from enum import Enum
from typing import Any

__all__ = ["check_choice", "check_count", "check_flag", "check_seed"]

SEED_LIMIT = 2**63


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


def check_choice(value: Any, choices: type[Enum] | Iterable[str], name: str) -> str:
    """One of ``choices`` (an options enum or strings), as its plain ``str`` value.

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
