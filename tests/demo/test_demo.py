"""Tests for landscape.demo: digits data, the demo models, deterministic training."""

from __future__ import annotations

import os

import pytest
import torch
from _shared import ROOT
from torch import nn

from landscape.demo import (
    BUILTIN_DATA,
    BUILTIN_MODELS,
    DEMO_RECIPES,
    README_TABLE_MARKERS,
    digits_cnn,
    digits_data,
    digits_mlp,
    train_classifier,
    train_demo_pair,
    update_readme_table,
)
from landscape.evaluate import Objective


def _states_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def _clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


# these models are tiny: one thread is as fast alone and far faster on a busy machine
pytestmark = pytest.mark.usefixtures("one_thread_per_module")


@pytest.fixture(scope="module")
def train_data():
    pytest.importorskip("sklearn")  # the demo extra: the digits
    return digits_data("train")


@pytest.fixture(scope="module")
def small_data(train_data):
    inputs, targets = train_data
    return inputs[:200], targets[:200]


# ---------------------------------------------------------------- data
@pytest.mark.demo
def test_digits_shapes_and_values():
    sizes = {}
    for split in ("train", "test", "all"):
        inputs, targets = digits_data(split)
        assert inputs.dtype == torch.float32 and targets.dtype == torch.long
        assert inputs.shape == (len(targets), 64)
        assert float(inputs.min()) == 0.0 and float(inputs.max()) == 1.0
        assert sorted(targets.unique().tolist()) == list(range(10))
        sizes[split] = len(targets)
    assert sizes == {"train": 1442, "test": 355, "all": 1797}
    counts = torch.bincount(digits_data("test")[1], minlength=10)
    assert int(counts.min()) >= 34 and int(counts.max()) <= 36  # stratified


@pytest.mark.demo
def test_digits_split_is_fixed_and_partitions_the_data():
    x1, y1 = digits_data("train")
    x1[:] = -1.0  # the caller owns the returned tensors
    x2, y2 = digits_data("train")
    assert float(x2.min()) == 0.0
    assert torch.equal(y1, y2)
    xt, yt = digits_data("test")
    xa, ya = digits_data("all")
    rows = {tuple(r) for r in torch.cat([x2, xt]).double().tolist()}
    assert rows == {tuple(r) for r in xa.double().tolist()}
    assert torch.equal(torch.bincount(torch.cat([y2, yt])), torch.bincount(ya))
    # Regression guard on the split itself: its first test labels and a checksum.
    assert yt[:10].tolist() == [5, 0, 9, 8, 7, 1, 2, 6, 3, 4]
    assert float(xt.double().mul(16).sum()) == 111152.0


@pytest.mark.demo
def test_digits_dtype_and_errors():
    inputs, _ = digits_data("test", dtype=torch.float64)
    assert inputs.dtype == torch.float64
    assert torch.equal(inputs.float(), digits_data("test")[0])
    with pytest.raises(ValueError, match="expected one of 'train', 'test', 'all' for split"):
        digits_data("validation")
    with pytest.raises(ValueError, match="floating"):
        digits_data("train", dtype=torch.long)


# ---------------------------------------------------------------- models
@pytest.mark.demo
@pytest.mark.parametrize(
    ("build", "num_params", "names"),
    [
        (digits_mlp, 8970, ["fc1.weight", "fc2.bias", "fc3.weight"]),
        (digits_cnn, 6186, ["conv1.weight", "bn1.running_mean", "bn2.weight", "fc.bias"]),
    ],
)
def test_models_forward(build, num_params, names):
    model = build()
    assert sum(p.numel() for p in model.parameters()) == num_params
    assert set(names) <= set(model.state_dict())
    inputs = digits_data("test")[0][:7]
    for mode in (True, False):
        assert model.train(mode)(inputs).shape == (7, 10)
    model64 = build(dtype=torch.float64)
    assert all(t.dtype == torch.float64 for t in model64.parameters())
    assert model64(inputs.double()).dtype == torch.float64


@pytest.mark.parametrize("build", [digits_mlp, digits_cnn])
def test_model_construction_is_seeded_and_leaves_global_rng(build):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b, c = build(), build(seed=0), build(seed=1)
    assert torch.equal(torch.get_rng_state(), before)
    assert _states_equal(a, b)
    assert not _states_equal(a, c)
    with pytest.raises(TypeError, match="expected an int seed"):
        build(seed=1.5)
    with pytest.raises(ValueError, match="floating"):
        build(dtype=torch.int32)


@pytest.mark.demo
def test_registries():
    assert set(BUILTIN_MODELS) == {"digits-mlp", "digits-cnn"}
    assert set(BUILTIN_DATA) == {"digits", "digits-train", "digits-test"}
    for build in BUILTIN_MODELS.values():
        assert isinstance(build(), nn.Module)
    for name, split in (("digits", "train"), ("digits-train", "train"), ("digits-test", "test")):
        inputs, targets = BUILTIN_DATA[name]()
        assert torch.equal(inputs, digits_data(split)[0])
        assert torch.equal(targets, digits_data(split)[1])


# ---------------------------------------------------------------- training
def test_training_is_deterministic_and_leaves_inputs(small_data):
    model = digits_mlp()
    before = _clone_state(model)
    torch.manual_seed(7)
    rng = torch.get_rng_state()
    kwargs = {"batch_size": 32, "steps": 30, "lr": 0.05, "progress": False}
    a = train_classifier(model, small_data, seed=3, **kwargs)
    b = train_classifier(model, small_data, seed=3, **kwargs)
    c = train_classifier(model, small_data, seed=4, **kwargs)
    assert torch.equal(torch.get_rng_state(), rng)  # global RNG neither read nor moved
    assert _states_equal(a, b)
    assert not torch.equal(a.fc1.weight, c.fc1.weight)  # the seed drives the shuffling
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert model.training and not a.training
    assert a is not model


def _train_recipes(data, num_threads_run: int, **options) -> dict[str, nn.Module]:
    """The demo's two recipes, cut to 40 steps, trained with torch set to num_threads_run."""
    saved = torch.get_num_threads()
    torch.set_num_threads(num_threads_run)
    try:
        models = {}
        for name, recipe in DEMO_RECIPES.items():
            recipe = {k: v for k, v in recipe.items() if k not in ("epochs", "steps")}
            models[name] = train_classifier(
                digits_mlp(), data, steps=40, progress=False, **recipe, **options
            )
        assert torch.get_num_threads() == num_threads_run  # restored after training
        return models
    finally:
        torch.set_num_threads(saved)


def test_demo_training_is_bit_identical_whatever_the_thread_count(train_data):
    one = _train_recipes(train_data, 1)
    two = _train_recipes(train_data, 2)
    for name in DEMO_RECIPES:
        assert _states_equal(one[name], two[name]), name
    # Positive control: left on torch's two threads the full-batch run's sums differ.
    free = _train_recipes(train_data, 2, num_threads=None)
    assert not _states_equal(free["large-batch"], one["large-batch"])


def test_training_thread_count_errors(small_data):
    with pytest.raises(ValueError, match="expected an int num_threads >= 1, got 0"):
        train_classifier(digits_mlp(), small_data, lr=0.1, steps=1, num_threads=0)


def test_training_reaches_low_loss(train_data):
    model = train_classifier(
        digits_mlp(), train_data, steps=200, lr=0.01, optimizer="adam", progress=False
    )
    result = Objective(model, train_data)()
    assert result["loss"] < 0.01 and result["accuracy"] == 1.0
    assert Objective(model, digits_data("test"))()["accuracy"] > 0.9


def test_training_counts_steps_and_epochs(small_data):
    calls = []
    model = digits_mlp()
    model.register_forward_pre_hook(lambda module, args: calls.append(len(args[0])))
    train_classifier(model, small_data, batch_size=64, epochs=2, lr=0.01, progress=False)
    assert calls == [64, 64, 64, 8] * 2  # 200 examples: ragged last batch kept
    calls.clear()
    train_classifier(model, small_data, batch_size=64, steps=6, lr=0.01, progress=False)
    assert calls == [64, 64, 64, 8, 64, 64]
    calls.clear()
    train_classifier(model, small_data, steps=3, lr=0.01, progress=True)  # full batch, bar
    assert calls == [200, 200, 200]


def test_training_cnn_updates_batchnorm_on_the_copy_only(small_data):
    model = digits_cnn()
    before = _clone_state(model)
    trained = train_classifier(model, small_data, batch_size=100, steps=4, lr=0.05, progress=False)
    assert not torch.equal(trained.bn1.running_mean, before["bn1.running_mean"])
    assert int(trained.bn1.num_batches_tracked) == 4
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert trained(small_data[0][:3]).shape == (3, 10)


def test_training_errors(small_data):
    model = digits_mlp()
    with pytest.raises(ValueError, match="exactly one of epochs and steps"):
        train_classifier(model, small_data, lr=0.1)
    with pytest.raises(ValueError, match="exactly one of epochs and steps"):
        train_classifier(model, small_data, lr=0.1, epochs=1, steps=1)
    with pytest.raises(ValueError, match="expected an int batch_size >= 1"):
        train_classifier(model, small_data, lr=0.1, steps=1, batch_size=0)
    with pytest.raises(ValueError, match="expected a positive lr"):
        train_classifier(model, small_data, lr=0.0, steps=1)
    with pytest.raises(ValueError, match="expected one of 'sgd', 'adam' for optimizer"):
        train_classifier(model, small_data, lr=0.1, steps=1, optimizer="lbfgs")
    with pytest.raises(TypeError, match="expected a tuple"):
        train_classifier(model, [small_data], lr=0.1, steps=1)
    with pytest.raises(ValueError, match="same length"):
        train_classifier(model, (small_data[0], small_data[1][:5]), lr=0.1, steps=1)
    with pytest.raises(TypeError, match="expected an nn.Module model"):
        train_classifier("mlp", small_data, lr=0.1, steps=1)


def _loss_rise(model: nn.Module, data, *, scale: float, num_directions: int = 5) -> float:
    """Mean rise of the train loss along filter-normalized random directions (biases fixed)."""
    objective = Objective(model, data)
    base = objective()["loss"]
    generator = torch.Generator().manual_seed(0)
    rises = []
    for _ in range(num_directions):
        point = {}
        for name, w in model.named_parameters():
            d = torch.randn(w.shape, generator=generator)
            if w.dim() > 1:
                d *= w.detach().norm(dim=1, keepdim=True) / d.norm(dim=1, keepdim=True)
            else:
                d.zero_()
            point[name] = w.detach() + scale * d
        rises.append(objective(point)["loss"] - base)
    return sum(rises) / num_directions


@pytest.mark.slow
def test_demo_pair_fits_and_large_batch_is_sharper(train_data):
    assert set(DEMO_RECIPES) == {"small-batch", "large-batch"}
    models = train_demo_pair(progress=False)
    assert list(models) == ["small-batch", "large-batch"]
    for model in models.values():
        result = Objective(model, train_data)()
        assert result["loss"] < 0.01 and result["accuracy"] == 1.0
    small = _loss_rise(models["small-batch"], train_data, scale=0.2)
    large = _loss_rise(models["large-batch"], train_data, scale=0.2)
    assert large > 3 * small > 0  # measured: about 0.024 vs 0.0014 with seed 0


def test_readme_table_is_replaced_only_when_it_changes(tmp_path):
    start, end = README_TABLE_MARKERS
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{start}\n| old |\n{end}\n\nmore\n", encoding="utf-8")
    assert update_readme_table(str(readme), "| new |\n")
    assert readme.read_text(encoding="utf-8") == f"# title\n\n{start}\n| new |\n{end}\n\nmore\n"
    stamp = readme.stat().st_mtime_ns - 10**9
    os.utime(readme, ns=(stamp, stamp))
    assert not update_readme_table(str(readme), "| new |")
    assert readme.stat().st_mtime_ns == stamp
    readme.write_text("no markers\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no demo table"):
        update_readme_table(str(readme), "| new |")


def test_the_readme_has_the_demo_table_markers():
    root = ROOT
    text = open(os.path.join(root, "README.md"), encoding="utf-8").read()
    assert all(marker in text for marker in README_TABLE_MARKERS)


def _make_recipe(makefile: str, target: str) -> list[str]:
    """The command lines of one Makefile target (tab-indented lines after ``target:``)."""
    lines = open(makefile, encoding="utf-8").read().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


@pytest.mark.demo
def test_make_demo_writes_only_where_git_ignores():
    import shutil
    import subprocess

    root = ROOT
    makefile = os.path.join(root, "Makefile")
    variables = dict(
        line.split(" ?= ", 1) for line in open(makefile, encoding="utf-8").read().splitlines()
        if " ?= " in line
    )  # fmt: skip
    (command,) = _make_recipe(makefile, "demo")
    assert "--readme" not in command  # the README is the maintainer target's job
    out = command.split("--out", 1)[1].split()[0].replace("$(DEMO_OUT)", variables["DEMO_OUT"])
    assert not out.startswith("figures")
    (refresh,) = _make_recipe(makefile, "readme-table")
    assert refresh.endswith("landscape demo --out figures --readme README.md")
    if shutil.which("git") is None or not os.path.exists(os.path.join(root, ".git")):
        pytest.skip("needs git and a git checkout to ask what is ignored")
    probe = f"{out}/demo_small-batch_contour.png"
    ignored = subprocess.run(["git", "check-ignore", "-q", probe], cwd=root, check=False)
    assert ignored.returncode == 0, f"git does not ignore {probe}, which make demo writes"


def test_the_core_runs_without_scikit_learn_and_the_digits_say_what_to_install():
    # scikit-learn is the demo extra: blocked, the library computes; only the digits refuse
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['sklearn'] = None\n"
        "import numpy as np, torch, landscape as ls\n"
        "from landscape.demo import digits_data, digits_mlp\n"
        "torch.manual_seed(0)\n"
        "model = torch.nn.Sequential(torch.nn.Linear(3, 2))\n"
        "data = torch.randn(8, 3), torch.randint(0, 2, (8,))\n"
        "directions = ls.random_directions(model, seed=0)\n"
        "surface = ls.compute_surface(model, data, directions, np.linspace(-1, 1, 3),\n"
        "                             progress=False)\n"
        "assert surface['loss'][1] == ls.Objective(model, data)()['loss']\n"
        "digits_mlp()\n"
        "try:\n"
        "    digits_data()\n"
        "except RuntimeError as err:\n"
        "    print(err)\n"
    )
    root = ROOT
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(
        "expected scikit-learn for the digits data (pip install 'landscape[demo]'), got "
    ), out.stdout
    pyproject = open(os.path.join(root, "pyproject.toml"), encoding="utf-8").read()
    core = pyproject.split("dependencies = [", 1)[1].split("]", 1)[0]
    assert "scikit-learn" not in core
    assert 'demo = ["scikit-learn' in pyproject
