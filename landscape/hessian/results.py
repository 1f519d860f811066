"""The Hessian result dataclasses, kept here under their old import path; they live in
:mod:`landscape.results.hessian` (this module re-exports its ``__all__``)."""

from __future__ import annotations

from ..results.hessian import *  # noqa: F403
from ..results.hessian import __all__  # noqa: F401
