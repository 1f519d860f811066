"""Tests for landscape.data: the accepted forms of data, caching, fingerprints, sharding."""

from __future__ import annotations

import pytest
import torch

import landscape.data
from landscape import distributed
from landscape.data import EvaluationData, as_batches, fingerprint, split_batch, to_device


def pairs(n=10):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, generator=g), torch.randint(0, 2, (n,), generator=g)


def test_every_accepted_form_gives_the_same_batches():
    xs, ys = pairs()
    from_tuple = list(as_batches((xs, ys), batch_size=4))
    dataset = torch.utils.data.TensorDataset(xs, ys)
    from_dataset = list(as_batches(dataset, batch_size=4))
    loader = torch.utils.data.DataLoader(dataset, batch_size=4)
    assert as_batches(loader) is loader
    assert [len(b[1]) for b in from_tuple] == [4, 4, 2]
    for (a, b), (c, d) in zip(from_tuple, from_dataset, strict=True):
        assert torch.equal(a, c) and torch.equal(b, d)
    assert fingerprint(from_tuple) == fingerprint(from_dataset) == fingerprint(loader)


def test_bad_data_is_refused_with_what_was_expected():
    with pytest.raises(ValueError, match="same length"):
        as_batches((torch.zeros(3, 2), torch.zeros(4)))
    with pytest.raises(ValueError, match="positive"):
        as_batches(pairs(), batch_size=0)
    with pytest.raises(TypeError, match="DataLoader, a Dataset"):
        as_batches(3)
    with pytest.raises(ValueError, match="empty"):
        EvaluationData([])


def test_fingerprint_sees_values_shapes_dtypes_and_order():
    xs, ys = pairs()
    base = fingerprint(as_batches((xs, ys), batch_size=4))
    changed = xs.clone()
    changed[7, 1] += 1e-6
    assert fingerprint(as_batches((changed, ys), batch_size=4)) != base
    assert fingerprint(as_batches((xs, ys), batch_size=5)) != base
    assert fingerprint(as_batches((xs.double(), ys), batch_size=4)) != base
    assert fingerprint([{"b": 1, "a": xs}]) == fingerprint([{"a": xs, "b": 1}])


def test_fingerprint_is_computed_once_and_uncached_data_is_reread(monkeypatch):
    calls = []
    original = landscape.data.fingerprint
    monkeypatch.setattr(landscape.data, "fingerprint", lambda b: calls.append(1) or original(b))
    cached = EvaluationData(pairs(), batch_size=4)
    assert cached.sha256() == cached.sha256() == original(as_batches(pairs(), batch_size=4))
    assert len(calls) == 1
    reads = []

    class Counting:
        def __iter__(self):
            reads.append(1)
            return iter(as_batches(pairs(), batch_size=4))

    uncached = EvaluationData(Counting(), cache=False)
    assert uncached.num_batches == 3 and list(uncached)[2][1].shape == (2,)
    assert len(reads) == 2 and uncached.sha256() == cached.sha256()


def test_sharding_without_a_group_keeps_everything():
    assert not distributed.is_distributed()
    data = EvaluationData(pairs(), batch_size=4, shard=True)
    assert not data.sharded and data.num_batches == 3
    moved = to_device({"x": torch.ones(2), "y": [torch.zeros(1), "text"]}, torch.device("cpu"))
    assert moved["y"][1] == "text" and moved["x"].device.type == "cpu"


def test_a_shuffling_dataloader_is_read_in_order_with_a_warning():
    xs, ys = pairs(11)
    dataset = torch.utils.data.TensorDataset(xs, ys)
    in_order = list(torch.utils.data.DataLoader(dataset, batch_size=4, drop_last=True))
    shuffled = torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=True, drop_last=True)
    with pytest.warns(UserWarning, match="shuffles; evaluating its examples in order"):
        batches = list(as_batches(shuffled))
    assert fingerprint(batches) == fingerprint(in_order) and len(batches) == 2
    subset = torch.utils.data.SubsetRandomSampler([7, 2, 9, 4])
    with pytest.warns(UserWarning, match="in order"):
        ((inputs, targets),) = as_batches(torch.utils.data.DataLoader(dataset, 4, sampler=subset))
    assert torch.equal(inputs, xs[[2, 4, 7, 9]]) and torch.equal(targets, ys[[2, 4, 7, 9]])
    drawn = torch.utils.data.RandomSampler(dataset, replacement=True)  # not a permutation
    kept = torch.utils.data.DataLoader(dataset, batch_size=4, sampler=drawn)
    assert as_batches(kept) is kept


def test_dict_batches_are_cached_fingerprinted_and_split():
    ids = torch.arange(12).reshape(3, 4)
    batch = {"input_ids": ids, "attention_mask": torch.ones(3, 4), "labels": ids, "tag": "x"}
    data = EvaluationData([batch], device="cpu")
    (cached,) = list(data)
    assert cached["tag"] == "x" and torch.equal(cached["input_ids"], ids)
    inputs, targets = split_batch(cached)
    assert sorted(inputs) == ["attention_mask", "input_ids", "tag"] and targets is ids
    inputs, targets = split_batch({"input_ids": ids})  # no labels: the loss reads the inputs
    assert targets is inputs
    inputs, targets = split_batch(batch, ("labels", "tag"))
    assert sorted(targets) == ["labels", "tag"]
    renamed = {**batch, "labels": ids + 1}
    assert data.sha256() != EvaluationData([renamed]).sha256()
    with pytest.raises(TypeError, match="pair"):
        split_batch((ids, ids, ids))
