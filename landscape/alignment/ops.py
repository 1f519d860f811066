"""The torch modules and functions whose effect on channels :mod:`landscape.alignment.spec`
knows: elementwise (the channels stay), pooling (conv channels stay), binary (two spaces
become one), with a scalar, and arithmetic on sizes."""

from __future__ import annotations

import operator

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "BINARY",
    "ELEMENTWISE_FUNCTIONS",
    "ELEMENTWISE_METHODS",
    "ELEMENTWISE_MODULES",
    "META_METHODS",
    "NORMS",
    "POOLS",
    "POOL_FUNCTIONS",
    "SCALAR",
    "SIZE_ARITHMETIC",
]

ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Mish, nn.ELU, nn.Tanh, nn.Sigmoid,
    nn.Softplus, nn.Hardtanh, nn.Hardswish, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
    nn.Dropout3d, nn.Identity,
)  # fmt: skip
POOLS = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)  # fmt: skip
ELEMENTWISE_FUNCTIONS = {
    F.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, F.mish, F.elu, F.tanh, F.sigmoid,
    F.softplus, F.dropout, F.hardtanh, torch.relu, torch.tanh, torch.sigmoid, torch.exp,
    torch.neg, operator.neg,
}  # fmt: skip
ELEMENTWISE_METHODS = {"relu", "tanh", "sigmoid", "contiguous", "clone", "float", "double"}
POOL_FUNCTIONS = {
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
}  # fmt: skip
BINARY = {operator.add, operator.sub, operator.mul, torch.add, torch.sub, torch.mul}
SCALAR = {operator.truediv, torch.div, operator.pow, torch.pow}
META_METHODS = {"size", "dim"}
SIZE_ARITHMETIC = {operator.add, operator.sub, operator.mul, operator.floordiv, operator.getitem}
NORMS = tuple(c for c in (nn.LayerNorm, getattr(nn, "RMSNorm", None)) if c is not None)
