"""Every public call leaves the caller's model and random streams as they were, and the
model's own random draws (Dropout in train mode) come from the objective's seed."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from landscape import compute_surface
from landscape.compare import compare_checkpoints
from landscape.directions import random_directions
from landscape.evaluate import Objective
from landscape.hessian import hessian_eigenpairs, hessian_trace, spectral_density
from landscape.hessian.operator import HessianOperator
from landscape.paths import connect_checkpoints
from landscape.sharpness import MEASURES, sharpness
from landscape.trajectory import trajectory_plane


class Net(nn.Module):
    """BatchNorm, Dropout and a non-persistent buffer: everything train mode can touch."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(4)
        self.hidden = nn.Linear(4, 5)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(5, 3)
        self.register_buffer("scale", torch.ones(4), persistent=False)

    def forward(self, x):
        return self.out(self.drop(torch.tanh(self.hidden(self.bn(x * self.scale)))))


def _net() -> Net:
    torch.manual_seed(0)
    model = Net().double()
    model.hidden.weight.grad = torch.ones_like(model.hidden.weight)  # an existing grad
    model.out.bias.requires_grad_(False)
    model.eval()
    model.drop.train()  # mixed flags must come back as they were
    return model


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 4, generator=g, dtype=torch.float64), torch.arange(8) % 3


def _snapshot(model: nn.Module) -> dict:
    return {
        "tensors": {n: t.detach().clone() for n, t in model.state_dict().items()},
        "extra": {n: b.clone() for n, b in model.named_buffers()},
        "flags": [m.training for m in model.modules()],
        "grads": {
            n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()
        },
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "hooks": [
            (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for m in model.modules()
        ],
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.get_state()[1].copy(),  # noqa: NPY002 (the global one)
        "python_rng": random.getstate(),
    }


def _assert_same(before: dict, model: nn.Module) -> None:
    after = _snapshot(model)
    for key in ("tensors", "extra"):
        assert before[key].keys() == after[key].keys()
        for name, t in before[key].items():
            assert torch.equal(t, after[key][name]), f"{key} {name} changed"
    for name, grad in before["grads"].items():
        if grad is None:
            assert after["grads"][name] is None, f"{name}.grad appeared"
        else:
            assert torch.equal(grad, after["grads"][name]), f"{name}.grad changed"
    for key in ("flags", "requires_grad", "hooks", "python_rng"):
        assert before[key] == after[key], f"{key} changed"
    assert torch.equal(before["torch_rng"], after["torch_rng"]), "torch's global RNG moved"
    assert np.array_equal(before["numpy_rng"], after["numpy_rng"]), "numpy's global RNG moved"


def _objective(model: nn.Module, **options) -> Objective:
    return Objective(model, _data(), batch_size=4, train_mode=True, **options)


EVAL_ONLY = ("fisher_rao", "relative_flatness")
#: Tiny budgets: these calls check plumbing (the model left as it was), not values.
PLUMBING_BUDGETS = dict(max_hvps=20, num_probes=4, num_ascent_steps=2)
CALLS = {
    "objective": lambda m: _objective(m)(),
    "surface": lambda m: compute_surface(
        m,
        _data(),
        random_directions(m, num=2),
        [0, 1],
        [0, 1],
        batch_size=4,
        train_mode=True,
        progress=False,
    ),  # fmt: skip
    "eigenpairs": lambda m: hessian_eigenpairs(_objective(m), k=1, progress=False),
    "trace": lambda m: hessian_trace(_objective(m), num_probes=4, progress=False),
    "density": lambda m: spectral_density(
        _objective(m), num_probes=1, num_steps=5, num_grid=20, progress=False
    ),
    # per-example gradients (fisher_rao) and vmap (relative_flatness) need eval mode
    "sharpness": lambda m: sharpness(
        _objective(m),
        [n for n in MEASURES if n not in EVAL_ONLY],
        num_samples=2,
        **PLUMBING_BUDGETS,
        optimizer=torch.optim.SGD(m.parameters(), lr=0.1),  # for preconditioned_sharpness
        progress=False,
    ),  # fmt: skip
    "sharpness_eval": lambda m: sharpness(
        Objective(m, _data(), batch_size=4),
        list(MEASURES),
        num_samples=2,
        **PLUMBING_BUDGETS,
        progress=False,
        optimizer=torch.optim.SGD(m.parameters(), lr=0.1),
    ),  # fmt: skip
    "compare": lambda m: compare_checkpoints(
        m,
        {"a": m.state_dict()},
        _data(),
        measures=["trace"],
        line=[0.0, 1.0],
        num_directions=1,
        batch_size=4,
        progress=False,
    ),  # fmt: skip
    "connect": lambda m: connect_checkpoints(
        _objective(m),
        m,
        {n: t + 0.1 for n, t in m.state_dict().items()},
        t=3,
        num_steps=2,
    ),  # fmt: skip
    "trajectory": lambda m: trajectory_plane(
        _objective(m),
        [{n: t + 0.1 * k for n, t in m.state_dict().items()} for k in range(3)],
        num_points=2,
    ),
}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("call", CALLS)
def test_call_leaves_model_and_random_streams_unchanged(call):
    model = _net()
    hook = model.hidden.register_forward_hook(lambda *_: None)
    before = _snapshot(model)
    CALLS[call](model)
    _assert_same(before, model)
    hook.remove()


def test_dropout_draws_come_from_the_seed():
    model = _net()
    first, again = _objective(model)(), _objective(model)()
    assert first == again
    assert _objective(model, seed=1)() != first
    # the Hessian's determinism check passes: every evaluation draws the same masks
    assert HessianOperator(_objective(model)).size > 0


def test_seed_must_fit_a_generator():
    with pytest.raises(ValueError, match="2\\*\\*63"):
        _objective(_net(), seed=2**64)
