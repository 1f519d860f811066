"""The built-in digits models and data behind ``make demo``.

Everything here runs offline on a CPU in seconds: the data is scikit-learn's 8x8 handwritten
digits (``sklearn.datasets.load_digits``, 1797 images shipped inside scikit-learn), the models
are a small MLP and a small CNN with BatchNorm, and :func:`train_demo_pair` trains the classic
small-batch / large-batch pair whose minima differ in sharpness (Keskar et al. 2017).

Models are built under a forked RNG seeded from ``seed``, and training shuffles with its own
``torch.Generator``, so nothing here reads or changes torch's global random state.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DigitsSplit",
    "digits_data",
    "digits_mlp",
    "digits_cnn",
    "train_classifier",
    "train_demo_pair",
    "DEMO_RECIPES",
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
    from sklearn.datasets import load_digits

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
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
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


# ---------------------------------------------------------------- models
def _seeded(build: Callable[[], nn.Module], seed: int, dtype: torch.dtype) -> nn.Module:
    """Run ``build`` under a forked CPU RNG seeded with ``seed``; global RNG untouched."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
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
        TypeError: if ``seed`` is not an int.
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
        TypeError: if ``seed`` is not an int.
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


# ---------------------------------------------------------------- training
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
            f"data must be a tuple (inputs, targets) of tensors, got {type(data).__name__}"
        )
    inputs, targets = data
    if len(inputs) != len(targets) or len(inputs) == 0:
        raise ValueError(
            "inputs and targets must be non-empty and of the same length, got "
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
        TypeError: if ``model`` or ``data`` has the wrong type.
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
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    inputs, targets = _check_data(data)
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if (epochs is None) == (steps is None):
        raise ValueError(f"give exactly one of epochs and steps, got {epochs=} and {steps=}")
    counts = (("epochs", epochs), ("steps", steps), ("batch_size", batch_size))
    for name, value in (*counts, ("num_threads", num_threads)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")

    trained = copy.deepcopy(model).train()
    param = next(trained.parameters())
    inputs = inputs.to(param.device)
    if inputs.is_floating_point():
        inputs = inputs.to(param.dtype)
    targets = targets.to(param.device)
    n = len(inputs)
    size = n if batch_size is None else min(batch_size, n)
    per_epoch = math.ceil(n / size)
    total = steps if steps is not None else epochs * per_epoch
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


#: The demo's two training recipes (keyword arguments of :func:`train_classifier`), both on
#: the digits MLP from the same initialisation and the training split.
DEMO_RECIPES: dict[str, dict[str, object]] = {
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


# ---------------------------------------------------------------- the demo job
def _demo_figures(surfaces: dict, label: str, out_dir: str) -> list[str]:
    from matplotlib.figure import Figure

    from . import plotting

    draw = {
        "line": plotting.plot_line,
        "contour": plotting.plot_contour,
        "contourf": plotting.plot_contourf,
        "heatmap": plotting.plot_heatmap,
        "surface3d": plotting.plot_surface3d,
    }
    written = []
    with plotting.landscape_style():
        for kind, plot in draw.items():
            fig = Figure(figsize=(4.2, 3.3), layout="constrained")
            ax = fig.add_subplot(projection="3d" if kind == "surface3d" else None)
            surface = surfaces["line" if kind == "line" else "plane"]
            plot(surface, ("loss", "accuracy") if kind == "line" else "loss", ax)
            fig.suptitle(f"digits MLP, {label}")
            written.append(str(plotting.save_figure(fig, f"{out_dir}/demo_{label}_{kind}.png")))
    return written


#: The lines around the demo's table in a README; :func:`update_readme_table` fills them in.
README_TABLE_MARKERS = (
    "<!-- demo table: written by `make readme-table` -->",
    "<!-- end of demo table -->",
)


def update_readme_table(readme: str, table: str) -> bool:
    r"""Put ``table`` between the :data:`README_TABLE_MARKERS` lines of ``readme``.

    The file is rewritten only when its text changes (atomically), so an unchanged table
    leaves it untouched.

    Returns:
        Whether the file was rewritten.

    Raises:
        ValueError: the file lacks the markers.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "README.md")
        >>> start, end = README_TABLE_MARKERS
        >>> _ = open(path, "w").write(f"# x\n{start}\nold\n{end}\n")
        >>> update_readme_table(path, "| a |"), update_readme_table(path, "| a |")
        (True, False)
    """
    import os

    start, end = README_TABLE_MARKERS
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    if start not in text or end not in text.split(start, 1)[1]:
        raise ValueError(
            f"{readme} has no demo table to update: expected the lines {start!r} and {end!r}"
        )
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    new = f"{head}{start}\n{table.strip()}\n{end}{tail}"
    if new == text:
        return False
    temporary = f"{readme}.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        f.write(new)
    os.replace(temporary, readme)
    return True


def run_demo(
    out_dir: str = "figures",
    *,
    num_points: int = 51,
    seed: int = 0,
    progress: bool = True,
    readme: str | None = None,
) -> dict[str, object]:
    """The main job behind ``make demo``: train, compute, store, plot, compare, summarize.

    Training runs on one thread (see :func:`train_classifier`), so the weights, the table
    and the figures are the same whatever the thread count; the rest uses torch's threads
    (sampled measures then differ in the sixth or seventh digit, below what is printed).

    Trains the small-batch and large-batch digits MLPs (:func:`train_demo_pair`), saves their
    checkpoints, computes for each a 1D line and a ``num_points`` x ``num_points`` plane of
    filter-normalized random directions on the training data (resumable HDF5 files), draws
    the line, contour, filled contour, heatmap and 3D figures, and compares the two minima
    on sharpness measures with the test data for the generalization gap.

    Args:
        out_dir: where every file goes (``build/demo`` for ``make demo``, ``figures`` for
            ``make readme-table``).
        num_points: points per axis of the lines and planes.
        seed: seed of training and of the directions.
        progress: show progress bars.
        readme: a README whose demo table (see :func:`update_readme_table`) gets the
            comparison's table; untouched when the table is unchanged.

    Returns:
        ``{"surfaces": {label: {"line": Surface, "plane": Surface}}, "comparison": ...}``.
    """
    import dataclasses
    import os

    from .checkpoint import save_checkpoint
    from .compare import compare_checkpoints, plot_comparison, write_tables
    from .directions import random_directions
    from .surface import compute_surface

    os.makedirs(out_dir, exist_ok=True)
    train, test = digits_data("train"), digits_data("test")
    models = train_demo_pair(seed=seed, progress=progress)
    grid = np.linspace(-1, 1, num_points)  # float64: the centre is exactly 0
    surfaces: dict[str, dict] = {}
    for label, model in models.items():
        save_checkpoint(model, f"{out_dir}/demo_{label}.pt")
        line_dirs = random_directions(model, num=1, seed=seed)
        plane_dirs = random_directions(model, num=2, seed=seed)
        options = dict(progress=progress, attrs={"model": "digits-mlp", "data": "digits"})
        surfaces[label] = {
            "line": compute_surface(model, train, line_dirs, grid,
                                    path=f"{out_dir}/demo_{label}_line.h5", **options),
            "plane": compute_surface(model, train, plane_dirs, grid, grid,
                                     path=f"{out_dir}/demo_{label}_plane.h5", **options),
        }  # fmt: skip
        _demo_figures(surfaces[label], label, out_dir)

    comparison = compare_checkpoints(
        digits_mlp(), models, train, test_data=test, line=grid, seed=seed,
        path=f"{out_dir}/compare.h5", progress=progress,
    )  # fmt: skip
    planes = {label: s["plane"] for label, s in surfaces.items()}
    comparison = dataclasses.replace(comparison, planes=planes)
    write_tables(comparison, out_dir)
    plot_comparison(comparison, out_dir)
    print(f"\nlandscape demo: figures and HDF5 files in {out_dir}/\n")
    print(comparison.to_markdown())
    if readme is not None and update_readme_table(readme, comparison.to_markdown()):
        print(f"updated the demo table in {readme}")
    return {"surfaces": surfaces, "comparison": comparison}
