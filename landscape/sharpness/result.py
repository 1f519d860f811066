"""The result of one sharpness measure, kept here under its old import path; it lives in
:mod:`landscape.results.sharpness`."""

from __future__ import annotations

from ..results.sharpness import SharpnessResult

__all__ = ["SharpnessResult"]
