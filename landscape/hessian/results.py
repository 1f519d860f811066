"""The Hessian result dataclasses, kept here under their old import path; they live in
:mod:`landscape.results.hessian`."""

from __future__ import annotations

from ..results.hessian import (
    BlockCurvature,
    DensityResult,
    EigenResult,
    ExtremeEigenvalues,
    HessianResults,
    TraceResult,
)

__all__ = [
    "EigenResult",
    "ExtremeEigenvalues",
    "TraceResult",
    "DensityResult",
    "HessianResults",
    "BlockCurvature",
]
