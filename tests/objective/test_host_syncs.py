"""No host read per probe, batch, sample or ascent step (issue 10, item 6).

Every read of a tensor's value by the host (``float(t)``, ``bool(t)``, ``t.item()``,
``t.tolist()``, ``t.cpu()``, ``t.numpy()``) waits for a CUDA device to finish its queue.
On the CPU they cost nothing but can be counted: the conversions to a Python number all
dispatch ``aten._local_scalar_dense``, and the others are counted where they are called.
Each loop runs at two sizes; the count must not grow with the size. Version 0.2 read the
loss or a norm once per batch, probe or ascent step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from _host_reads import HostReads
from torch import nn

from landscape.evaluate import Objective
from landscape.hessian import HessianOperator, hessian_trace
from landscape.linalg import dense_operator, estimate_trace
from landscape.sharpness import (
    measure_average_case,
    measure_fisher_rao,
    measure_rise,
    measure_worst_case,
)
from landscape.sharpness._evaluation import loss_and_grad, weights_of

f64 = torch.float64


@pytest.fixture
def reads() -> Callable[[Callable[[], object]], int]:
    """``reads(call)``: how many times the host reads tensor values while ``call()`` runs."""

    def count(call: Callable[[], object]) -> int:
        with HostReads() as counter:
            call()
        return counter.count

    return count


@pytest.mark.parametrize("read", ["float", "int", "bool", "item", "tolist", "cpu", "numpy"])
def test_the_counter_counts_one_known_read_and_no_arithmetic(reads, read):
    t = torch.tensor(1.5, dtype=f64)
    convert = {"float": float, "int": int, "bool": bool}.get(read)
    read = convert or (lambda tensor, name=read: getattr(tensor, name)())
    assert reads(lambda: read(t)) == 1  # the positive control: each read is seen
    assert reads(lambda: t * 2 + torch.ones(3).sum()) == 0
    assert reads(lambda: [read(t) for _ in range(3)]) == 3
    assert "tolist" not in vars(torch.Tensor) and t.tolist() == 1.5  # restored after counting


def mlp_objective(num_batches: int) -> Objective:
    """A tanh MLP (float64) on 24 examples in ``num_batches`` batches."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 3, generator=g, dtype=f64)
    y = torch.randn(24, 1, generator=g, dtype=f64)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).to(f64)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=f64))
    objective = Objective(model, (x, y), loss="mse", batch_size=24 // num_batches)
    objective(None)  # counts the examples, and fingerprints the data: once per data set
    objective.data_sha256()
    return objective


@pytest.fixture(scope="module")
def objectives() -> dict[int, Objective]:
    """Objectives with 2 and 8 batches, made before counting (so is their first evaluation)."""
    return {b: mlp_objective(b) for b in (2, 8)}


def same_reads(reads, call: Callable[[int], object], small: int, large: int) -> None:
    counts = reads(lambda: call(small)), reads(lambda: call(large))
    assert counts[0] == counts[1], counts


# -- linalg and Hessian: one read per call, not per probe or batch


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_trace_reads_its_sums_once(reads, method):
    a = torch.randn(40, 40, generator=torch.Generator().manual_seed(0), dtype=f64)
    op = dense_operator(a + a.T, dtype=torch.float32)
    same_reads(reads, lambda p: estimate_trace(op, num_probes=p, method=method), 6, 30)


def test_a_hessian_operator_reads_its_loss_sums_once(reads, objectives):
    same_reads(reads, lambda b: HessianOperator(objectives[b]), 2, 8)


def test_hessian_trace_reads_do_not_grow_with_batches_or_probes(reads, objectives):
    same_reads(reads, lambda b: hessian_trace(objectives[b], num_probes=9, progress=False), 2, 8)
    objective = objectives[2]
    same_reads(reads, lambda p: hessian_trace(objective, num_probes=p, progress=False), 6, 30)


# -- sharpness: gradients, ascent steps and restarts


def test_loss_and_grad_reads_nothing(reads, objectives):
    for objective in objectives.values():
        weights, batches = weights_of(objective), list(objective.batches())
        assert reads(lambda o=objective, w=weights, c=batches: loss_and_grad(o, w, c)) == 0


@pytest.mark.parametrize(("p", "adaptive"), [(2, False), (math.inf, False), (2, True)])
def test_worst_case_reads_do_not_grow_with_steps_restarts_or_batches(
    reads, objectives, p, adaptive
):
    objective = objectives[2]

    def measure(objective=objective, **settings):
        settings = {"num_steps": 2, "num_restarts": 1, **settings}
        return measure_worst_case(objective, p=p, adaptive=adaptive, progress=False, **settings)

    same_reads(reads, lambda k: measure(num_steps=k), 2, 12)
    same_reads(reads, lambda r: measure(num_restarts=r), 1, 4)
    same_reads(reads, lambda b: measure(objectives[b]), 2, 8)
    same_reads(reads, lambda m: measure(batch_size=24 // m), 2, 8)  # m-sharpness chunks


def test_fisher_rao_reads_once(reads, objectives):
    same_reads(reads, lambda b: measure_fisher_rao(objectives[b], progress=False), 2, 8)


@pytest.mark.parametrize("measure", [measure_average_case, measure_rise])
def test_sampling_measures_read_once_per_call(reads, objectives, measure):
    objective = objectives[2]
    same_reads(reads, lambda n: measure(objective, num_samples=n, progress=False), 2, 8)


# -- surfaces: one read per chunk of points, not per point or batch


def test_points_read_once_per_call_whatever_their_number(reads, objectives):
    objective = objectives[8]
    base = objective.base_state
    plane = [{n: torch.ones_like(t) for n, t in base.items()},
             {n: torch.full_like(t, 0.5) for n, t in base.items()}]  # fmt: skip

    def points(num: int) -> object:
        coords = np.stack([np.linspace(0.1, 1, num), np.full(num, 0.3)], axis=1)
        return objective.evaluate_points(base, plane, coords)

    same_reads(reads, points, 2, 8)
