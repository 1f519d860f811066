"""A PyTorch Lightning callback that logs a :class:`~landscape.Tracker`.

Example (needs ``pip install landscape[lightning]``)::

    callback = TrackerCallback(data=data, path="run.h5", every=50,
                               measures=["loss", "preconditioned_sharpness"])
    trainer = lightning.Trainer(max_steps=1000, callbacks=[callback])
    trainer.fit(module, loader)

Given ``data=`` and the Tracker's options, the callback builds its Tracker when training
starts, with the trainer's first optimizer (``trainer.optimizers[0]``) and the ``guard``
given; a ready :class:`~landscape.Tracker` works too. Under ``torchrun`` (a DDP strategy)
rank 0 alone computes and writes (every rank when the Tracker's objective shards the data),
and each step is recorded once. The LightningModule itself is tracked: its ``forward`` must
give what the tracker's loss takes (or give the tracker a ``batch_loss`` closure).
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from ..optim import StabilityGuard
from ..tracking import Tracker
from ._common import TrackerLogging

__all__ = ["TrackerCallback"]


class TrackerCallback(Callback):
    """Logs a Tracker at the start of training (step ``trainer.global_step``) and after
    every training batch, with the trainer's optimizer-step count; the module is not
    changed. The first log waits for the first step where ``preconditioned_sharpness``
    meets an optimizer without state (Adam's preconditioner exists after its first step).

    Args:
        tracker: the :class:`~landscape.Tracker` to log; or leave it out and give
            ``data``.
        data: the data of a Tracker built when training starts, with ``optimizer``
            (default: ``trainer.optimizers[0]``), ``guard`` and ``**tracker_options``.
        optimizer: the optimizer the Tracker reads (default: the trainer's first).
        guard: a :class:`~landscape.optim.StabilityGuard` given every measure and its
            threshold after each log (on every rank, with rank 0's values).
        **tracker_options: the Tracker's other options (``path``, ``every``, ``measures``,
            ``loss``, ...).

    Raises:
        ValueError: both or neither of ``tracker`` and ``data``, or options beside a
            ``tracker``.
    """

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

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._logging.start(trainer.optimizers[0] if trainer.optimizers else None)
        self._logging.log_start(pl_module, trainer.global_step)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._logging.log(pl_module, trainer.global_step)
