"""Evaluation data: batches from any accepted form, on one device, cached, fingerprinted, sharded.

:class:`EvaluationData` is what an :class:`~landscape.objective.Objective` evaluates over.
It is built once per data set and run: the batches are moved to the device once (kept
there unless ``cache=False``), the fingerprint is computed once on first request, and under
``torch.distributed`` each rank keeps its share. Several Objectives (the training and test
data of a comparison, one Objective re-pointed at many checkpoints) share one instance, so
nothing is moved or hashed twice.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SubsetRandomSampler

from . import distributed

DEFAULT_BATCH_SIZE = 1024

# The keys of a mapping batch that hold labels (for the loss, not the model).
LABEL_KEYS = ("labels",)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "LABEL_KEYS",
    "EvaluationData",
    "as_batches",
    "call_model",
    "fingerprint",
    "split_batch",
    "to_device",
]


def to_device(obj: Any, device: torch.device) -> Any:
    """``obj`` with every tensor inside (mappings, lists, tuples) moved to ``device``.

    Example:
        >>> to_device({"x": torch.zeros(2), "n": 3}, torch.device("cpu"))["x"].device.type
        'cpu'
    """
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def split_batch(batch: Any, label_keys: Sequence[str] = LABEL_KEYS) -> tuple[Any, Any]:
    """``(inputs, targets)`` of a batch.

    A pair is taken as it is. A mapping (Hugging Face style: ``input_ids``,
    ``attention_mask``, ...) gives the model's keyword inputs, every key but
    ``label_keys``, and the targets: the tensor under the one label key present, a dict
    when several are, the inputs themselves when none is (the token losses then take the
    labels from ``input_ids``).

    Raises:
        TypeError: a batch that is neither a pair nor a mapping.

    Example:
        >>> batch = {"input_ids": torch.ones(2, 3), "labels": torch.zeros(2, 3)}
        >>> inputs, targets = split_batch(batch)
        >>> sorted(inputs), tuple(targets.shape)
        (['input_ids'], (2, 3))
    """
    if isinstance(batch, Mapping):
        inputs = {k: v for k, v in batch.items() if k not in label_keys}
        labels = {k: batch[k] for k in label_keys if k in batch}
        if not labels:
            return inputs, inputs
        return inputs, next(iter(labels.values())) if len(labels) == 1 else labels
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise TypeError(
        "a batch must be a pair (inputs, targets) or a mapping of model inputs and labels, got "
        f"{type(batch).__name__}"
        + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
    )


def call_model(model: Callable[..., Any], inputs: Any) -> Any:
    """``model(**inputs)`` for a mapping of inputs, ``model(inputs)`` otherwise.

    Example:
        >>> call_model(lambda input_ids: input_ids + 1, {"input_ids": torch.zeros(1)})
        tensor([1.])
    """
    return model(**inputs) if isinstance(inputs, Mapping) else model(inputs)


def as_batches(data: Any, *, batch_size: int | None = None) -> Iterable[Any]:
    """Turn the forms of data the library accepts into an iterable of batches.

    Accepted: a ``DataLoader`` or any iterable of batches (used as is: ``(inputs, targets)``
    pairs or mappings, see :func:`split_batch`), a ``Dataset`` (batched in order), or a
    tuple ``(inputs, targets)`` of tensors (sliced in order). A
    ``DataLoader`` that shuffles (a ``RandomSampler`` without replacement, or a
    ``SubsetRandomSampler``) is replaced, with a warning, by one over the same examples in
    order with the same batch size, so that every run sees the same batches.

    Args:
        data: the data, in one of the forms above.
        batch_size: examples per batch for a Dataset or a tensor tuple (default
            :data:`DEFAULT_BATCH_SIZE`); batches given as such are kept as they are.

    Raises:
        ValueError: ``batch_size < 1``, or inputs and targets of different lengths.
        TypeError: ``data`` is none of the accepted forms.

    Example:
        >>> xs, ys = torch.zeros(5, 2), torch.zeros(5, dtype=torch.long)
        >>> [len(b[1]) for b in as_batches((xs, ys), batch_size=2)]
        [2, 2, 1]
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    size = batch_size or DEFAULT_BATCH_SIZE
    is_pair = isinstance(data, tuple) and len(data) == 2
    if is_pair and all(isinstance(t, torch.Tensor) for t in data):
        inputs, targets = data
        if len(inputs) != len(targets):
            raise ValueError(
                "inputs and targets must have the same length, "
                f"got {len(inputs)} and {len(targets)}"
            )
        return [(inputs[i : i + size], targets[i : i + size]) for i in range(0, len(inputs), size)]
    if isinstance(data, DataLoader):
        return _in_order(data)
    if isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__"):
        return DataLoader(data, batch_size=size, shuffle=False)
    if isinstance(data, Iterable):
        return data
    raise TypeError(
        "data must be a DataLoader, a Dataset, a tuple (inputs, targets) of tensors or an "
        f"iterable of (inputs, targets) batches, got {type(data).__name__}"
    )


def _in_order(loader: DataLoader) -> DataLoader:
    """``loader``, or, if it shuffles, a loader over the same examples in index order."""
    batches = loader.batch_sampler
    sampler = batches.sampler if type(batches) is BatchSampler else loader.sampler
    if type(sampler) is RandomSampler and not sampler.replacement:
        if sampler.num_samples != len(sampler.data_source):
            return loader  # a random selection: no fixed order gives the same examples
        indices = None
    elif type(sampler) is SubsetRandomSampler:
        indices = sorted(sampler.indices)
    else:
        return loader
    warnings.warn(
        "the DataLoader shuffles; evaluating its examples in order instead, with the same "
        "batch size, so that every run sees the same batches",
        UserWarning,
        stacklevel=3,
    )
    batch_size, drop_last = loader.batch_size, loader.drop_last
    if type(batches) is BatchSampler:
        batch_size, drop_last = batches.batch_size, batches.drop_last
    return DataLoader(
        loader.dataset, batch_size=batch_size, sampler=indices, drop_last=drop_last,
        collate_fn=loader.collate_fn, num_workers=loader.num_workers,
        pin_memory=loader.pin_memory, timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
    )  # fmt: skip


def fingerprint(batches: Iterable[Any]) -> str:
    """SHA-256 of a sequence of batches: every tensor's dtype, shape and bytes, in order;
    mapping keys sorted; anything else by its ``repr``.

    Example:
        >>> batch = (torch.arange(3.0), torch.tensor([0, 1, 0]))
        >>> fingerprint([batch]) == fingerprint([batch]), fingerprint([batch]) == fingerprint([])
        (True, False)
    """
    h = hashlib.sha256()
    feed = _feeder(h)
    for batch in batches:
        feed(batch)
    return h.hexdigest()


def _feeder(h: Any) -> Callable[[Any], None]:
    """The function that adds one batch to the hash ``h`` (see :func:`fingerprint`)."""

    def feed(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(obj, Mapping):
            for k in sorted(obj):
                h.update(str(k).encode())
                feed(obj[k])
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                feed(v)
        else:
            h.update(repr(obj).encode())

    return feed


class EvaluationData:
    """Batches on one device, in a fixed order: cached, fingerprinted once, sharded.

    Args:
        data: a DataLoader, Dataset, ``(inputs, targets)`` tuple, or iterable of batches
            (see :func:`as_batches`).
        device: where the batches go.
        batch_size: batch size for a Dataset or a tensor tuple.
        cache: move the batches to the device once and keep them (default); with
            ``False`` they are read from ``data`` and moved at every pass (for data that
            does not fit), and ``data`` must give the same batches every time.
        shard: under an initialized ``torch.distributed`` group of several ranks, keep
            batches ``rank, rank + world_size, ...`` only (every batch is still read and,
            cached, hashed in the same pass, so the fingerprint is the whole data's).
            Without one it changes nothing.

    Raises:
        ValueError: cached data without a single batch (on one rank).

    Example:
        >>> data = EvaluationData((torch.zeros(5, 2), torch.zeros(5)), batch_size=2)
        >>> data.num_batches, len(data.sha256())
        (3, 64)
    """

    def __init__(
        self,
        data: Any,
        *,
        device: torch.device | str = "cpu",
        batch_size: int | None = None,
        cache: bool = True,
        shard: bool = False,
    ):
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.sharded = bool(shard) and distributed.world_size() > 1
        self._rank, self._world = (
            (distributed.rank(), distributed.world_size()) if self.sharded else (0, 1)
        )
        self._source = as_batches(data, batch_size=batch_size)
        self.cached = bool(cache)
        self._sha256: str | None = None
        self._batches: list[Any] | None = None
        if self.cached and self.sharded:  # the whole data's fingerprint, in the one pass
            h = hashlib.sha256()
            self._batches = list(self._own(self._source, _feeder(h)))
            self._sha256 = h.hexdigest()
        elif self.cached:
            self._batches = list(self._own(self._source))
        if self._batches is not None and not self._batches and not self.sharded:
            raise ValueError("data is empty: expected at least one batch")

    def _own(
        self, source: Iterable[Any], feed: Callable[[Any], None] | None = None
    ) -> Iterator[Any]:
        for i, batch in enumerate(source):
            if feed is not None:
                feed(batch)
            if i % self._world == self._rank:
                yield to_device(batch, self.device)

    def __iter__(self) -> Iterator[Any]:
        """This rank's batches on the device, in order."""
        if self._batches is not None:
            return iter(self._batches)
        return self._own(self._source)

    @property
    def num_batches(self) -> int:
        """Number of this rank's batches (one pass over uncached data to count them)."""
        if self._batches is not None:
            return len(self._batches)
        return sum(1 for _ in self)

    def sha256(self) -> str:
        """The fingerprint (:func:`fingerprint`) of the whole data, computed on the first call
        and kept: sharded, the same on every rank as in one process (all the batches are
        hashed as they pass, in the caching pass, or read again from ``data`` uncached)."""
        if self._sha256 is None:
            self._sha256 = fingerprint(self._source if self.sharded else self)
        return self._sha256
