"""A PyTorch Lightning callback that logs a :class:`~landscape.Tracker`.

Example (needs ``pip install landscape[lightning]``)::

    tracker = landscape.Tracker(data, path="run.h5", every=50)
    trainer = lightning.Trainer(max_steps=1000, callbacks=[TrackerCallback(tracker)])
    trainer.fit(module, loader)

The LightningModule itself is tracked: its ``forward`` must give what the tracker's loss
takes (or give the tracker a ``batch_loss`` closure).
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from ..tracking import Tracker

__all__ = ["TrackerCallback"]


class TrackerCallback(Callback):
    """Logs ``tracker`` at the start of training (step ``trainer.global_step``) and after
    every training batch, with the trainer's optimizer-step count; the module is not changed.

    Args:
        tracker: the :class:`~landscape.Tracker` to log.
    """

    def __init__(self, tracker: Tracker):
        self.tracker = tracker

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.tracker.log(pl_module, trainer.global_step)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.tracker.log(pl_module, trainer.global_step)
