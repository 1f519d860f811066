"""Sharded layouts refused up front (landscape.objective.layouts), DDP unwrapped, and the
Tracker's file written by rank 0 alone.

DTensor and FSDP2 cases run on a one-rank gloo group inside this process (destroyed after
each test); the two-rank cases are in tests/objective/test_sharded.py.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from landscape import tracking
from landscape.evaluate import Objective
from landscape.objective.layouts import layout_problem, unwrap
from landscape.tracking import Tracker

DATA = (torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1] * 3))


@pytest.fixture
def one_rank(tmp_path):
    """A one-rank gloo group and a one-device CPU mesh, destroyed after the test."""
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available() or dist.is_initialized():
        pytest.skip("needs torch.distributed and no group already")
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    from torch.distributed.device_mesh import init_device_mesh

    try:
        yield init_device_mesh("cpu", (1,))
    finally:
        dist.destroy_process_group()


def test_fsdp2_model_evaluated_in_place_and_batch_sums_refused(one_rank):
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    expected = Objective(copy.deepcopy(model), DATA)()
    fully_shard(model, mesh=one_rank)
    objective = Objective(model, DATA)
    assert objective() == expected
    with pytest.raises(ValueError, match=r"sharded by FSDP2.*full_state_dict=True"):
        objective.batch_sums(objective.base_state, next(objective.batches()))


def test_dtensor_placements_other_than_shard_or_replicate_refused(one_rank):
    from torch.distributed.tensor import DTensor, Partial, Replicate, distribute_tensor

    model = nn.Linear(3, 2)
    plain = Objective(nn.Linear(3, 2), DATA)
    weight = model.weight.detach()
    model.weight = nn.Parameter(distribute_tensor(weight, one_rank, [Replicate()]))
    with pytest.raises(ValueError, match="DTensor"):  # a sharded checkpoint for .at()
        plain.at(model.state_dict())
    with pytest.raises(ValueError, match="DTensor"):
        plain.at(model)
    model.weight = nn.Parameter(DTensor.from_local(weight, one_rank, [Partial()]))
    with pytest.raises(ValueError, match=r"'weight' placed Partial.*get_model_state_dict"):
        Objective(model, DATA)


def test_zero3_and_device_map_refused():
    model = nn.Linear(3, 2)
    model.weight.ds_id = 0  # what DeepSpeed ZeRO-3 sets on its partitioned parameters
    with pytest.raises(ValueError, match="'weight' as a DeepSpeed ZeRO-3"):
        Objective(model, DATA)
    spread = nn.Linear(3, 2)
    spread.hf_device_map = {"a": 0, "b": "cpu"}
    with pytest.raises(ValueError, match="device_map over 2 devices"):
        Objective(spread, DATA)
    spread.hf_device_map = {"a": "cpu", "b": "cpu"}
    assert layout_problem(spread) is None
    assert "loss" in Objective(spread, DATA)()


def test_data_parallel_unwrapped():
    model = nn.Linear(3, 2)
    wrapped = nn.DataParallel(model)
    assert unwrap(wrapped) is model
    objective = Objective(wrapped, DATA)
    assert objective.model is model
    assert objective.at(wrapped)() == Objective(model, DATA)()


def test_tracker_unwraps_ddp(one_rank):
    model = nn.Linear(3, 2)
    ddp = nn.parallel.DistributedDataParallel(model)
    logged = Tracker(DATA, measures=["loss", "lambda_max"]).log(ddp, 0)
    assert logged == Tracker(DATA, measures=["loss", "lambda_max"]).log(model, 0)


def test_tracker_on_other_ranks_keeps_its_logs_in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking.tracker, "rank", lambda: 1)
    tracker = Tracker(DATA, path=tmp_path / "run.h5", every=2, measures=["loss"])
    for step in range(3):
        tracker.log(nn.Linear(3, 2), step)
    assert not (tmp_path / "run.h5").exists()  # rank 0 alone writes
    assert tracker.run.steps.tolist() == [0, 2]
