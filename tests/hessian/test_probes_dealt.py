"""Hutchinson and SLQ probes dealt across ranks when the data are not sharded (issue 21,
item 3): under two gloo ranks each rank makes about half the HVPs and returns the
one-process result; with ``shard_data=True`` every rank still makes every product.

This file is also the worker: ``torchrun ... tests/hessian/test_probes_dealt.py OUTDIR``.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
from torch import nn

from landscape import distributed
from landscape.hessian import HessianOperator, hessian_trace, spectral_density
from landscape.linalg import dense_operator, estimate_trace
from landscape.objective import Objective

PROBES, DENSITY_PROBES, STEPS = 7, 3, 5  # 7 probes: 4 on rank 0, 3 on rank 1


def objective(shard: bool = False, data_seed: int = 2) -> Objective:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    g = torch.Generator().manual_seed(data_seed)
    data = torch.randn(20, 4, generator=g).double(), torch.randint(0, 3, (20,), generator=g)
    return Objective(model, data, batch_size=5, shard_data=shard)


def jobs(rank: int = 0) -> dict[str, tuple[object, int]]:
    """Each job's result and the HVPs this rank made for it; "own_data" on data of this
    rank's own (``rank``), which are not dealt: each rank computes its own answer."""
    out: dict[str, tuple[object, int]] = {}
    runs = {
        "hutchinson": (False, "exact", lambda op: hessian_trace(
            op, num_probes=PROBES, method="hutchinson", seed=3, progress=False)),
        "fd": (False, "fd", lambda op: hessian_trace(
            op, num_probes=PROBES, method="hutchinson", seed=3, progress=False)),
        "hutch++": (False, "exact", lambda op: hessian_trace(
            op, num_probes=9, method="hutch++", seed=3, progress=False)),
        "density": (False, "exact", lambda op: spectral_density(
            op, num_probes=DENSITY_PROBES, num_lanczos_steps=STEPS, seed=4, progress=False)),
        "three_term": (False, "exact", lambda op: spectral_density(
            op, num_probes=DENSITY_PROBES, num_lanczos_steps=STEPS, seed=4, progress=False,
            reorthogonalize=False)),
        "sharded": (True, "exact", lambda op: hessian_trace(
            op, num_probes=PROBES, method="hutchinson", seed=3, progress=False)),
    }  # fmt: skip
    runs["own_data"] = runs["hutchinson"]
    for name, (shard, hvp, run) in runs.items():
        data_seed = 2 + rank if name == "own_data" else 2
        op = HessianOperator(objective(shard, data_seed), hvp=hvp)
        before = op.num_hvps
        result = run(op)
        out[name] = (result, op.num_hvps - before)
    return out


def fields(result) -> dict[str, object]:
    keys = ("value", "stderr", "samples", "num_hvps", "nodes", "weights", "grid", "density")
    found = {k: getattr(result, k) for k in keys if hasattr(result, k)}
    if "hvp_bias_bound" in result.settings:
        found["bias"] = result.settings["hvp_bias_bound"]
    return {**found, "ranks": result.settings["ranks"]}


@pytest.mark.slow  # one torchrun launch with two ranks, and the references: 20 s on 2 busy cores
def test_probes_dealt_across_two_ranks_equal_one_process(tmp_path, one_thread):
    from _torchrun import torchrun  # tests/ is on the path under pytest, not in the worker

    done = torchrun(os.path.abspath(__file__), str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    single = {name: fields(result) for name, (result, _) in jobs().items()}
    own = [fields(jobs(rank)["own_data"][0]) for rank in (0, 1)]  # each rank's data alone
    counts = {0: {}, 1: {}}
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        single["own_data"] = own[rank]
        for name, expected in single.items():
            result, counts[rank][name] = got[name]
            assert expected["ranks"] == 1, name
            for key, value in expected.items():
                if key == "ranks":
                    dealt = name not in ("hutch++", "sharded", "own_data")
                    assert result[key] == (2 if dealt else 1), name
                elif name == "sharded" or key in ("stderr", "bias"):  # sums in another order
                    np.testing.assert_allclose(result[key], value, rtol=1e-12, err_msg=name)
                else:  # the same probes, the same products: the same numbers
                    np.testing.assert_array_equal(result[key], value, err_msg=f"{name} {key}")
    for name in ("hutchinson", "fd"):  # probes 0, 2, 4, 6 on rank 0; 1, 3, 5 on rank 1
        assert (counts[0][name], counts[1][name]) == (4, 3), name
    for name in ("density", "three_term"):
        assert (counts[0][name], counts[1][name]) == (2 * STEPS, STEPS), name
    assert own[0]["value"] != own[1]["value"]  # other data, another answer on each rank
    for name, total in (("hutch++", 9), ("sharded", PROBES), ("own_data", PROBES)):
        assert counts[0][name] == counts[1][name] == total, name
    assert single["hutchinson"]["num_hvps"] == PROBES  # the total, on every rank


def test_hutch_plus_plus_is_not_dealt():
    op = dense_operator(torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="expected method 'hutchinson' with deal_probes"):
        estimate_trace(op, num_probes=6, method="hutch++", deal_probes=True)
    alone = estimate_trace(op, num_probes=6, method="hutchinson", deal_probes=True)
    assert alone.value == 3.0 and alone.settings["ranks"] == 1  # no group: one rank


if __name__ == "__main__":
    distributed.init_from_env()
    me = distributed.rank()
    done = {name: (fields(result), count) for name, (result, count) in jobs(me).items()}
    torch.save(done, os.path.join(sys.argv[1], f"rank{me}.pt"))
    torch.distributed.destroy_process_group()
