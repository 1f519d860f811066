"""The residual stream of the hand-written transformer specs (:mod:`~.gpt2`,
:mod:`~.llama`): one group, :data:`RESIDUAL`, shared by every block, and the check that it
reaches every parameter (a parameter left out would read the permuted stream unpermuted).

Example:
    >>> complete("Net", {"a": (RESIDUAL,)}, {"a", "b"})
    Traceback (most recent call last):
    ...
    ValueError: cannot permute the residual stream of Net: expected known parameters, got b
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["RESIDUAL", "HandWritten", "complete"]

RESIDUAL = "residual"

#: What a hand-written spec gives (:func:`~.gpt2.gpt2_axes`, :func:`~.llama.llama_axes`):
#: ``(sizes, axes, heads)`` in the form of ``PermutationSpec``, or None for another model.
HandWritten = (
    tuple[dict[str, int], dict[str, tuple[Any, ...]], dict[str, tuple[int, tuple[str, ...]]]] | None
)


def complete(kind: str, axes: Mapping[str, tuple[Any, ...]], names: Iterable[str]) -> None:
    """Refuse a model with a parameter that ``axes`` does not list (the first, by name)."""
    stray = sorted(set(names) - set(axes))
    if stray:
        raise ValueError(
            f"cannot permute the residual stream of {kind}: expected known parameters, got "
            f"{stray[0]}"
        )
