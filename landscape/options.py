"""The named choices of landscape's options, in one place: ``str`` enums with a docstring
per member, and ``Literal`` aliases for type hints.

A member equals its value (``Norm.FILTER == "filter"``), so a plain string works wherever
a member does. Standard library only: the command line imports this module for ``--help``.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

__all__ = [
    "AlignMethod",
    "AlignMethodName",
    "DirType",
    "DirTypeName",
    "Curvature",
    "CurvatureName",
    "HvpBackend",
    "HvpBackendName",
    "Ignore",
    "IgnoreName",
    "Norm",
    "NormName",
    "Precision",
    "PrecisionName",
    "Repair",
    "RepairName",
    "Which",
    "WhichName",
    "values",
]


class _Choice(str, Enum):
    """A ``str`` enum whose ``str()`` is its value (as in Python 3.11's ``StrEnum``)."""

    def __str__(self) -> str:
        return str(self.value)


class Norm(_Choice):
    """How a random direction is rescaled to the weights (Li et al. 2018), per tensor of
    ``dim > 1``."""

    FILTER = "filter"
    """Each filter (dim-0 slice) rescaled to the norm of the same filter of the weights."""
    LAYER = "layer"
    """Each tensor rescaled to the norm of the weight tensor."""
    WEIGHT = "weight"
    """The direction multiplied elementwise by the weights."""
    NONE = "none"
    """Raw Gaussian entries."""


class Ignore(_Choice):
    """What a direction holds for tensors of ``dim <= 1`` (biases, norm-layer parameters)."""

    BIASBN = "biasbn"
    """Zero entries, so biases and BatchNorm parameters stay put."""
    NONE = "none"
    """Gaussian entries, normalized like a one-filter tensor."""


class DirType(_Choice):
    """Which tensors a direction covers."""

    WEIGHTS = "weights"
    """The parameters, by their names in ``model.named_parameters()``."""
    STATES = "states"
    """The whole ``model.state_dict()``: parameters and buffers (BatchNorm statistics)."""


class Precision(_Choice):
    """The arithmetic of the model's forward passes."""

    FP32 = "fp32"
    """Plain float32 (or the model's own dtype)."""
    TF32 = "tf32"
    """TensorFloat-32 matrix products and convolutions on CUDA; fp32 elsewhere."""
    BF16 = "bf16"
    """``torch.autocast`` to bfloat16 on the device."""


class Which(_Choice):
    """Which eigenvalues a Lanczos run returns."""

    LA = "LA"
    """Largest algebraic (the top of the spectrum)."""
    SA = "SA"
    """Smallest algebraic (the bottom of the spectrum)."""
    LM = "LM"
    """Largest magnitude."""
    BE = "BE"
    """Both ends: ``k // 2`` smallest and the rest largest."""


class HvpBackend(_Choice):
    """How a Hessian-vector product is computed (see :mod:`landscape.hessian.products`)."""

    EXACT = "exact"
    """Double backward: exact to round-off; needs second derivatives of every operation."""
    FD = "fd"
    """Central difference of two gradients: first derivatives only (fused attention
    kernels, ``torch.compile``), with a measured relative error."""
    AUTO = "auto"
    """``exact`` where double backward works on the first batch, ``fd`` otherwise."""


class Curvature(_Choice):
    """Which curvature matrix an operator applies."""

    HESSIAN = "hessian"
    """The Hessian of the mean loss."""
    GGN = "ggn"
    """The generalized Gauss-Newton matrix ``J^T H_out J`` (cross-entropy and MSE losses)."""


class AlignMethod(_Choice):
    """How :func:`landscape.align` pairs the hidden units of two networks."""

    WEIGHTS = "weights"
    """Weight matching (Ainsworth et al. 2023): no data needed."""
    ACTIVATIONS = "activations"
    """Correlation of the units' activations over the data."""


class Repair(_Choice):
    """What is corrected at the interior points of a path between two networks."""

    RESET_BN = "reset_bn"
    """BatchNorm running statistics recomputed from the data at every point."""
    REPAIR = "repair"
    """Each layer's units rescaled to the interpolated endpoints' mean and standard
    deviation (REPAIR, Jordan et al. 2023)."""


NormName = Literal["filter", "layer", "weight", "none"]
IgnoreName = Literal["biasbn", "none"]
DirTypeName = Literal["weights", "states"]
PrecisionName = Literal["fp32", "tf32", "bf16"]
WhichName = Literal["LA", "SA", "LM", "BE"]
HvpBackendName = Literal["exact", "fd", "auto"]
CurvatureName = Literal["hessian", "ggn"]
AlignMethodName = Literal["weights", "activations"]
RepairName = Literal["reset_bn", "repair"]


def values(choices: type[Enum]) -> tuple[str, ...]:
    """The values of an options enum, in order (for ``argparse`` choices and messages).

    Example:
        >>> values(Ignore)
        ('biasbn', 'none')
    """
    return tuple(member.value for member in choices)
