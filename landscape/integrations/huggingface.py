"""A Hugging Face ``Trainer`` callback that logs a :class:`~landscape.Tracker`.

Example (needs ``pip install landscape[hf]``)::

    tracker = landscape.Tracker(batches, path="run.h5", every=50, loss="causal_lm")
    trainer = Trainer(model, args, train_dataset=train, callbacks=[TrackerCallback(tracker)])
    trainer.train()

Dict batches and ``ModelOutput`` outputs work as they are (see
:class:`~landscape.objective.Objective`); ``loss="causal_lm"`` is the exact mean over every
next token of the batches.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from ..tracking import Tracker

__all__ = ["TrackerCallback"]


class TrackerCallback(TrainerCallback):
    """Logs ``tracker`` at the start of training (step ``state.global_step``) and after
    every optimizer step, with the Trainer's step count; the model is not changed.

    Args:
        tracker: the :class:`~landscape.Tracker` to log.
    """

    def __init__(self, tracker: Tracker):
        self.tracker = tracker

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs):
        self.tracker.log(model, state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs):
        self.tracker.log(model, state.global_step)
