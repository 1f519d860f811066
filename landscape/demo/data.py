"""The digits data and the demo's models.

The data is scikit-learn's 8x8 handwritten digits (``sklearn.datasets.load_digits``, 1797
images shipped inside scikit-learn: the ``demo`` extra), split without random numbers; the
models are a small MLP and a small CNN with BatchNorm, built under a forked RNG seeded from
``seed``.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from ..checks import check_choice, check_seed

__all__ = [
    "DigitsSplit",
    "digits_data",
    "digits_mlp",
    "digits_cnn",
    "BUILTIN_MODELS",
    "BUILTIN_DATA",
]

DigitsSplit = Literal["train", "test", "all"]

NUM_FEATURES = 64  # 8x8 pixels, values 0..16
NUM_CLASSES = 10
TEST_EVERY = 5  # every 5th image of each class is a test image: a 1442/355 split


# ---------------------------------------------------------------- data
@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All images (float64, unscaled), labels, and the boolean test mask."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # an optional extra: the core library runs without it
        raise RuntimeError(
            f"expected scikit-learn for the digits data (pip install 'landscape[demo]'), got {err}"
        ) from None
    bunch = load_digits()
    images = torch.as_tensor(bunch.data, dtype=torch.float64)
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    # A split with no random numbers, so no library version can change it: within each
    # class, in file order, every TEST_EVERY-th image goes to the test set (stratified).
    test = torch.zeros(len(labels), dtype=torch.bool)
    for c in range(NUM_CLASSES):
        idx = (labels == c).nonzero().flatten()
        test[idx[TEST_EVERY - 1 :: TEST_EVERY]] = True
    return images, labels, test


def digits_data(
    split: DigitsSplit = "train", *, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8x8 digits as ``(features, labels)``, features scaled to [0, 1].

    The split is fixed and stratified: within each class, in file order, every 5th image is
    a test image (1442 train, 355 test, 34-36 per class). It uses no random numbers, so it
    is the same on every machine and every library version. Nothing is downloaded.

    Args:
        split: ``"train"``, ``"test"`` or ``"all"`` (all 1797 images in file order).
        dtype: floating dtype of the features.

    Returns:
        ``(X, y)``: ``X`` of shape ``(N, 64)`` (pixel / 16) and ``y`` of shape ``(N,)``,
        ``torch.long`` labels 0-9. Fresh tensors, safe to modify.

    Raises:
        ValueError: if ``split`` is not one of the three names or ``dtype`` is not floating.

    Example:
        >>> X, y = digits_data("train")
        >>> tuple(X.shape), tuple(y.shape), y.dtype, float(X.max())
        ((1442, 64), (1442,), torch.int64, 1.0)
    """
    check_choice(split, ("train", "test", "all"), "split")
    _check_dtype(dtype)
    images, labels, test = _digits_arrays()
    if split == "train":
        images, labels = images[~test], labels[~test]
    elif split == "test":
        images, labels = images[test], labels[test]
    return (images / 16.0).to(dtype), labels.clone()


def _digits_train() -> tuple[torch.Tensor, torch.Tensor]:
    """Digits training split (1442 images), float32 features in [0, 1]."""
    return digits_data("train")


def _digits_test() -> tuple[torch.Tensor, torch.Tensor]:
    """Digits test split (355 images), float32 features in [0, 1]."""
    return digits_data("test")


def _check_dtype(dtype: object) -> None:
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"expected a floating torch.dtype, got {dtype!r}")


# ---------------------------------------------------------------- models
def _seeded(build: Callable[[], nn.Module], seed: int, dtype: torch.dtype) -> nn.Module:
    """Run ``build`` under a forked CPU RNG seeded with ``seed``; global RNG untouched."""
    seed = check_seed(seed)
    _check_dtype(dtype)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        model = build()
    return model.to(dtype)


def digits_mlp(*, seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    """An MLP for the digits: 64 -> 64 -> 64 -> 10 with ReLU (8970 parameters).

    Args:
        seed: seed of the initialisation; the global RNG is neither read nor changed.
        dtype: floating dtype of the parameters.

    Returns:
        An ``nn.Sequential`` with layers ``fc1``, ``fc2``, ``fc3`` taking ``(N, 64)`` inputs
        and returning ``(N, 10)`` logits.

    Raises:
        TypeError: if ``seed`` is not an int (in ``0 .. 2**63 - 1``, else ``ValueError``).
        ValueError: if ``dtype`` is not floating.

    Example:
        >>> model = digits_mlp()
        >>> model(torch.zeros(2, 64)).shape, sum(p.numel() for p in model.parameters())
        (torch.Size([2, 10]), 8970)
    """

    def build() -> nn.Module:
        return nn.Sequential(
            OrderedDict(
                [
                    ("fc1", nn.Linear(NUM_FEATURES, 64)),
                    ("relu1", nn.ReLU()),
                    ("fc2", nn.Linear(64, 64)),
                    ("relu2", nn.ReLU()),
                    ("fc3", nn.Linear(64, NUM_CLASSES)),
                ]
            )
        )

    return _seeded(build, seed, dtype)


def digits_cnn(*, seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A small CNN with BatchNorm for the digits, taking the same ``(N, 64)`` features.

    The input is reshaped to ``(N, 1, 8, 8)`` inside the model; then conv 1->16 3x3, BN,
    ReLU, 2x2 max pool (to 4x4), conv 16->32 3x3, BN, ReLU, 2x2 average pool (to 2x2),
    flatten, linear 128 -> 10 (6186 parameters, plus BatchNorm running statistics).

    Args:
        seed: seed of the initialisation; the global RNG is neither read nor changed.
        dtype: floating dtype of the parameters and buffers.

    Returns:
        An ``nn.Sequential`` (``conv1``, ``bn1``, ``conv2``, ``bn2``, ``fc``, ...) returning
        ``(N, 10)`` logits.

    Raises:
        TypeError: if ``seed`` is not an int (in ``0 .. 2**63 - 1``, else ``ValueError``).
        ValueError: if ``dtype`` is not floating.

    Example:
        >>> model = digits_cnn().eval()
        >>> model(torch.zeros(2, 64)).shape, sum(p.numel() for p in model.parameters())
        (torch.Size([2, 10]), 6186)
    """

    def build() -> nn.Module:
        return nn.Sequential(
            OrderedDict(
                [
                    ("unflatten", nn.Unflatten(1, (1, 8, 8))),
                    ("conv1", nn.Conv2d(1, 16, 3, padding=1)),
                    ("bn1", nn.BatchNorm2d(16)),
                    ("relu1", nn.ReLU()),
                    ("pool1", nn.MaxPool2d(2)),
                    ("conv2", nn.Conv2d(16, 32, 3, padding=1)),
                    ("bn2", nn.BatchNorm2d(32)),
                    ("relu2", nn.ReLU()),
                    ("pool2", nn.AvgPool2d(2)),
                    ("flatten", nn.Flatten()),
                    ("fc", nn.Linear(32 * 2 * 2, NUM_CLASSES)),
                ]
            )
        )

    return _seeded(build, seed, dtype)


# ---------------------------------------------------------------- registries for the CLI
#: Built-in model names accepted wherever the CLI takes ``--model``.
BUILTIN_MODELS: dict[str, Callable[[], nn.Module]] = {
    "digits-mlp": digits_mlp,
    "digits-cnn": digits_cnn,
}

#: Built-in data names accepted wherever the CLI takes ``--data``; ``digits`` is the train split.
BUILTIN_DATA: dict[str, Callable[[], tuple[torch.Tensor, torch.Tensor]]] = {
    "digits": _digits_train,
    "digits-train": _digits_train,
    "digits-test": _digits_test,
}
