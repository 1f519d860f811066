"""Training the demo's classifiers: :func:`train_classifier` and the small/large-batch pair.

Training shuffles with its own ``torch.Generator``, so nothing here reads or changes torch's
global random state.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator
from typing import Literal, TypedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_choice, check_count, check_seed
from .data import digits_data, digits_mlp

__all__ = ["train_classifier", "train_demo_pair", "DEMO_RECIPES"]


@contextlib.contextmanager
def _threads(num_threads: int | None) -> Iterator[None]:
    """Run the block on ``num_threads`` CPU threads (``None``: unchanged), then restore."""
    before = torch.get_num_threads()
    if num_threads is not None and num_threads != before:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _check_data(data: object) -> tuple[torch.Tensor, torch.Tensor]:
    if not (
        isinstance(data, tuple)
        and len(data) == 2
        and all(isinstance(t, torch.Tensor) for t in data)
    ):
        raise TypeError(
            f"expected a tuple (inputs, targets) of tensors for data, got {type(data).__name__}"
        )
    inputs, targets = data
    if len(inputs) != len(targets) or len(inputs) == 0:
        raise ValueError(
            "expected non-empty inputs and targets of the same length, got "
            f"{len(inputs)} and {len(targets)}"
        )
    return inputs, targets


def train_classifier(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    *,
    lr: float,
    batch_size: int | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    optimizer: Literal["sgd", "adam"] = "sgd",
    seed: int = 0,
    progress: bool = True,
    num_threads: int | None = 1,
) -> nn.Module:
    """Train a copy of a classifier with cross-entropy; the given model is not changed.

    Each epoch visits the examples in an order drawn from a ``torch.Generator`` seeded with
    ``seed`` (the last batch of an epoch may be smaller), and the global RNG is never used.
    Training runs on ``num_threads`` threads (torch's setting is restored afterwards), so
    with the default of one thread the same seed gives bit-identical weights whatever the
    machine's thread count (the float summation order depends on the number of threads);
    other CPUs or library versions may still differ in the last bits. ``batch_size=None``
    (or at least the data size) trains full-batch: plain gradient descent with momentum for
    ``"sgd"``.

    Args:
        model: the network to start from; it is deep-copied.
        data: ``(inputs, targets)`` tensors, moved to the model's device and dtype.
        lr: learning rate.
        batch_size: examples per step; ``None`` for full batch.
        epochs: passes over the data. Give exactly one of ``epochs`` and ``steps``.
        steps: optimizer steps (epochs continue until this many have been taken).
        momentum: SGD momentum (ignored by Adam).
        weight_decay: L2 penalty passed to the optimizer.
        optimizer: ``"sgd"`` or ``"adam"``.
        seed: seed of the shuffling generator.
        progress: show a tqdm bar with the running loss.
        num_threads: CPU threads while training (``torch.set_num_threads``, restored on
            return; the setting is process-wide); ``None`` keeps torch's setting.

    Returns:
        The trained copy, in eval mode.

    Raises:
        TypeError: if ``model``, ``data``, a count or ``seed`` has the wrong type.
        ValueError: for a non-positive ``lr``, ``batch_size``, ``epochs``, ``steps`` or
            ``num_threads``, both or neither of ``epochs`` and ``steps``, or an unknown
            ``optimizer``.

    Example:
        >>> data = digits_data("train")
        >>> trained = train_classifier(digits_mlp(), data, lr=0.1, steps=5, progress=False)
        >>> trained.training
        False
    """
    from tqdm.auto import tqdm

    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module model, got {type(model).__name__}")
    inputs, targets = _check_data(data)
    if not lr > 0:
        raise ValueError(f"expected a positive lr, got {lr}")
    if (epochs is None) == (steps is None):
        raise ValueError(f"expected exactly one of epochs and steps, got {epochs=} and {steps=}")
    counts = (("epochs", epochs), ("steps", steps), ("batch_size", batch_size))
    for name, value in (*counts, ("num_threads", num_threads)):
        if value is not None:
            check_count(value, name)
    check_choice(optimizer, ("sgd", "adam"), "optimizer")
    seed = check_seed(seed)

    trained = copy.deepcopy(model).train()
    param = next(trained.parameters())
    inputs = inputs.to(param.device)
    if inputs.is_floating_point():
        inputs = inputs.to(param.dtype)
    targets = targets.to(param.device)
    n = len(inputs)
    size = n if batch_size is None else min(batch_size, n)
    per_epoch = math.ceil(n / size)
    total = steps if steps is not None else per_epoch * (epochs or 0)  # one of them: checked
    opt: torch.optim.Optimizer
    if optimizer == "sgd":
        opt = torch.optim.SGD(
            trained.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
        )
    else:
        opt = torch.optim.Adam(trained.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)

    step = 0
    bar = tqdm(total=total, disable=not progress, desc="train", unit="step", leave=False)
    with bar, _threads(num_threads):
        while step < total:
            order = torch.randperm(n, generator=generator) if size < n else None
            for start in range(0, n, size):
                if step == total:
                    break
                if order is None:
                    x, y = inputs, targets
                else:
                    idx = order[start : start + size].to(param.device)
                    x, y = inputs[idx], targets[idx]
                loss = F.cross_entropy(trained(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                bar.update(1)
                if progress and (step % 50 == 0 or step == total):
                    bar.set_postfix(loss=f"{loss.item():.4f}")
    return trained.eval()


class _Rates(TypedDict):
    lr: float
    momentum: float


class Recipe(_Rates, total=False):
    """Keyword arguments of :func:`train_classifier` that make a training recipe."""

    batch_size: int | None
    epochs: int
    steps: int


#: The demo's two training recipes (keyword arguments of :func:`train_classifier`), both on
#: the digits MLP from the same initialisation and the training split.
DEMO_RECIPES: dict[str, Recipe] = {
    "small-batch": {"batch_size": 16, "epochs": 30, "lr": 0.05, "momentum": 0.9},
    "large-batch": {"batch_size": None, "steps": 2500, "lr": 0.1, "momentum": 0.9},
}


def train_demo_pair(*, seed: int = 0, progress: bool = True) -> dict[str, nn.Module]:
    """Train the demo's small-batch and large-batch digits MLPs (a few seconds on a CPU).

    Both start from ``digits_mlp(seed=seed)`` and train on ``digits_data("train")`` with the
    recipes in :data:`DEMO_RECIPES`: SGD with batches of 16, and full-batch gradient descent.
    Both reach near-zero training loss; the large-batch one ends in a sharper minimum.

    Args:
        seed: seed of the initialisation and of the shuffling.
        progress: show progress bars.

    Returns:
        ``{"small-batch": model, "large-batch": model}``, both in eval mode.

    Example:
        >>> models = train_demo_pair(progress=False)  # doctest: +SKIP
        >>> sorted(models)  # doctest: +SKIP
        ['large-batch', 'small-batch']
    """
    init = digits_mlp(seed=seed)
    data = digits_data("train")
    return {
        name: train_classifier(init, data, seed=seed, progress=progress, **recipe)
        for name, recipe in DEMO_RECIPES.items()
    }
