"""What both callbacks share: the Tracker they log (given, or built at the start of training
with the trainer's optimizer), and one log a step, on rank 0 unless the data are sharded."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import distributed
from ..optim import StabilityGuard
from ..tracking import Tracker

_CALLBACK_ARGS = """

    Args:
        tracker: the :class:`~landscape.Tracker` to log; or leave it out and give
            ``data``.
        data: the data of a Tracker built when training starts, with ``optimizer``
            (default: {default}), ``guard`` and ``**tracker_options``.
        optimizer: the optimizer the Tracker reads (default: {default}).
        guard: a :class:`~landscape.optim.StabilityGuard` given every measure and its
            threshold after each log (on every rank, with rank 0's values).
        **tracker_options: the Tracker's other options (``path``, ``every``, ``measures``,
            ``loss``, ...).

    Raises:
        ValueError: both or neither of ``tracker`` and ``data``, or options beside a
            ``tracker``.
    """


def callback_doc(summary: str, *, default: str) -> str:
    """A callback's docstring: its ``summary`` and the Args both share, with ``default``
    naming the framework's optimizer."""
    return summary + _CALLBACK_ARGS.format(default=default)


class CallbackBase:
    """The constructor and ``tracker`` of both callbacks (documented by :func:`callback_doc`)."""

    def __init__(
        self,
        tracker: Tracker | None = None,
        *,
        data: Any = None,
        optimizer: torch.optim.Optimizer | None = None,
        guard: StabilityGuard | None = None,
        **tracker_options: Any,
    ):
        self._logging = TrackerLogging(tracker, data, optimizer, guard, tracker_options)

    @property
    def tracker(self) -> Tracker | None:
        """The Tracker (``None`` until training starts when it is built from ``data``)."""
        return self._logging.tracker


class TrackerLogging:
    """The Tracker of a callback and how a step is logged under torchrun.

    Args:
        tracker: a :class:`~landscape.Tracker` built by the user; or ``None`` and ``data``.
        data: the data of a Tracker built at the start of training with ``optimizer``
            (default: the trainer's), ``guard`` and ``tracker_options``.
        optimizer: the optimizer the Tracker reads (preconditioned sharpness, thresholds).
        guard: a :class:`~landscape.optim.StabilityGuard` given every measure.
        tracker_options: :class:`~landscape.Tracker`'s other options.

    Raises:
        ValueError: both or neither of ``tracker`` and ``data``, or a ``tracker`` with
            Tracker options beside it (give them to the Tracker).
    """

    def __init__(
        self,
        tracker: Tracker | None,
        data: Any,
        optimizer: torch.optim.Optimizer | None,
        guard: StabilityGuard | None,
        tracker_options: dict[str, Any],
    ):
        if (tracker is None) == (data is None):
            raise ValueError("expected a Tracker or data= to build one from, got "
                             f"{'both' if tracker is not None else 'neither'}")  # fmt: skip
        if tracker is not None:
            if not isinstance(tracker, Tracker):
                raise TypeError(f"expected a landscape Tracker, got {type(tracker).__name__}")
            given = [k for k, v in dict(optimizer=optimizer, guard=guard).items() if v is not None]
            given += sorted(tracker_options)
            if given:
                raise ValueError(f"expected the Tracker alone, got {given} beside it; give "
                                 "them to the Tracker")  # fmt: skip
        self.tracker: Tracker | None = tracker
        self._build = (data, optimizer, guard, tracker_options)

    def start(self, optimizer: Any) -> Tracker:
        """The Tracker: the given one, or one built now with ``optimizer`` (the trainer's,
        unwrapped from accelerate's or Lightning's wrapper) unless one was given."""
        if self.tracker is None:
            data, given, guard, options = self._build
            chosen = given if given is not None else _unwrapped(optimizer)
            self.tracker = Tracker(data, optimizer=chosen, guard=guard, **options)
        return self.tracker

    def log_start(self, model: nn.Module, step: int) -> dict[str, Any] | None:
        """The log before training, unless the Tracker measures ``preconditioned_sharpness``
        with an optimizer that has no state yet (Adam's preconditioner exists after its
        first step): then the first log is after the first step."""
        tracker = self.tracker if self.tracker is not None else self.start(None)
        fresh = tracker.optimizer is not None and not tracker.optimizer.state
        if fresh and "preconditioned_sharpness" in tracker.measures:
            return None
        return self.log(model, step)

    def flush(self) -> None:
        """The logs the Tracker holds for its ``write_every``, written at the end of training."""
        if self.tracker is not None:
            self.tracker.flush()

    def log(self, model: nn.Module, step: int) -> dict[str, Any] | None:
        """One log of ``step``: on rank 0 alone (it alone writes; every rank's guard gets
        its values), or on every rank when the log is collective (the Tracker's data or
        the model sharded: :meth:`~landscape.tracking.Tracker.collective`)."""
        tracker = self.tracker if self.tracker is not None else self.start(None)
        if tracker.collective(model) or distributed.world_size() == 1:
            return tracker.log(model, step)
        values = tracker.log(model, step) if distributed.rank() == 0 else None
        if tracker.guard is not None:  # the same decision on every rank (one lr for DDP)
            values = distributed.broadcast_object(values)
            if distributed.rank() != 0 and values is not None:
                for key in values:
                    if key.endswith("_threshold"):
                        name = key.removesuffix("_threshold")
                        tracker.guard.update(name, values[name], threshold=values[key], step=step)
        return values


def _unwrapped(optimizer: Any) -> torch.optim.Optimizer | None:
    """The torch optimizer inside accelerate's ``AcceleratedOptimizer`` or Lightning's
    ``LightningOptimizer`` (both keep it as ``.optimizer``); ``None`` stays ``None``."""
    while optimizer is not None and isinstance(getattr(optimizer, "optimizer", None),
                                               torch.optim.Optimizer):  # fmt: skip
        optimizer = optimizer.optimizer
    return optimizer
