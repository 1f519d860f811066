"""A PyTorch Lightning callback that logs a :class:`~landscape.Tracker`.

Example (needs ``pip install landscape[lightning]``)::

    callback = TrackerCallback(data=data, path="run.h5", every=50,
                               measures=["loss", "preconditioned_sharpness"])
    trainer = lightning.Trainer(max_steps=1000, callbacks=[callback])
    trainer.fit(module, loader)

Given ``data=`` and the Tracker's options, the callback builds its Tracker when training
starts, with the trainer's first optimizer (``trainer.optimizers[0]``) and the ``guard``
given; a ready :class:`~landscape.Tracker` works too. Under ``torchrun`` (a DDP strategy)
rank 0 alone computes and writes (every rank when the log is collective: the Tracker's data
or the model sharded), and each step is recorded once. The LightningModule itself is
tracked: its ``forward`` must give what the tracker's loss takes (or give the tracker a
``batch_loss`` closure).
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from ._common import CallbackBase, callback_doc

__all__ = ["TrackerCallback"]


class TrackerCallback(CallbackBase, Callback):
    __doc__ = callback_doc(
        """Logs a Tracker at the start of training (step ``trainer.global_step``) and after
    every training batch, with the trainer's optimizer-step count; the module is not
    changed. The first log waits for the first step where ``preconditioned_sharpness``
    meets an optimizer without state (Adam's preconditioner exists after its first step).""",
        default="``trainer.optimizers[0]``",
    )

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._logging.start(trainer.optimizers[0] if trainer.optimizers else None)
        self._logging.log_start(pl_module, trainer.global_step)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._logging.log(pl_module, trainer.global_step)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._logging.flush()
