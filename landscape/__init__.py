"""landscape: loss-landscape analysis of trained PyTorch models."""

__version__ = "0.1.0"
