"""Directions along the top Hessian eigenvectors (``--directions hessian``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from ..checks import renamed_keywords
from ..params import ParamSelection
from .core import Directions, check_num_directions

if TYPE_CHECKING:
    from ..hessian import HessianOperator
    from ..objective import Objective

__all__ = ["hessian_plane"]


@renamed_keywords(num="num_directions")
def hessian_plane(
    objective: Objective | HessianOperator,
    *,
    num_directions: int = 2,
    state: Mapping[str, torch.Tensor] | None = None,
    params: ParamSelection = None,
    dtype: torch.dtype | None = None,
    tol: float | None = None,
    max_hvps: int = 500,
    seed: int = 0,
    progress: bool = True,
) -> Directions:
    """The top two Hessian eigenvectors (:func:`landscape.hessian.hessian_directions`,
    which returns them as a list of states) as Directions of kind ``"hessian"``: a
    plane, or with ``num_directions=1`` the line along the top one (``num=``, its old
    name, is deprecated). ``settings`` hold the ``seed``.

    Raises:
        ValueError: ``num_directions`` is not 1 or 2.
    """
    num = check_num_directions(num_directions)
    from ..hessian import hessian_directions  # a workflow above directions: imported late

    top = hessian_directions(objective, state=state, params=params, dtype=dtype, tol=tol,
                             max_hvps=max_hvps, seed=seed, progress=progress)  # fmt: skip
    return Directions(top[0], top[1] if num == 2 else None, kind="hessian",
                      settings={"seed": seed})  # fmt: skip
