"""A Hugging Face ``Trainer`` callback that logs a :class:`~landscape.Tracker`.

Example (needs ``pip install landscape[hf]``)::

    callback = TrackerCallback(data=batches, path="run.h5", every=50, loss="causal_lm",
                               measures=["loss", "preconditioned_sharpness"])
    trainer = Trainer(model, args, train_dataset=train, callbacks=[callback])
    trainer.train()

Given ``data=`` and the Tracker's options, the callback builds its Tracker when training
starts, with the Trainer's optimizer (so ``preconditioned_sharpness``, ``batch_sharpness``
and the ``<measure>_threshold`` columns work) and the ``guard`` given; a ready
:class:`~landscape.Tracker` works too. Under ``torchrun`` or ``accelerate launch`` rank 0
alone computes and writes (every rank when the log is collective: the Tracker's data or the
model sharded), and each step is recorded once. Dict batches and ``ModelOutput`` outputs
work as they are (see :class:`~landscape.objective.Objective`); ``loss="causal_lm"`` is the
exact mean over every next token of the batches.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from ._common import CallbackBase, callback_doc

__all__ = ["TrackerCallback"]


class TrackerCallback(CallbackBase, TrainerCallback):
    __doc__ = callback_doc(
        """Logs a Tracker at the start of training (step ``state.global_step``) and after
    every optimizer step, with the Trainer's step count; the model is not changed. The
    first log waits for the first step where ``preconditioned_sharpness`` meets an
    optimizer without state (Adam's preconditioner exists after its first step).""",
        default="the Trainer's",
    )

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs):
        self._logging.start(kwargs.get("optimizer"))
        self._logging.log_start(model, state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs):
        self._logging.log(model, state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs):
        self._logging.flush()
