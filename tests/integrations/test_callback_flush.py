"""The callbacks write the logs a ``Tracker(write_every=)`` still holds when training ends."""

from __future__ import annotations

import pytest
import torch
from _tiny_trainer import TinyDictModel, dict_batch_loss, dict_examples, lightning_module, tiny_data

from landscape import load_tracking


def test_lightning_callback_writes_the_held_logs_at_the_end(tmp_path):
    lightning = pytest.importorskip("lightning.pytorch")
    from landscape.integrations.lightning import TrackerCallback

    x, y = tiny_data()
    torch.manual_seed(0)
    callback = TrackerCallback(data=(x, y), path=tmp_path / "run.h5", measures=["loss"],
                               write_every=10)  # fmt: skip
    trainer = lightning.Trainer(
        max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[callback],
    )  # fmt: skip
    trainer.fit(lightning_module(lightning)(), torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), 8))  # fmt: skip
    assert load_tracking(tmp_path / "run.h5").steps.tolist() == [0, 1, 2]


def test_huggingface_callback_writes_the_held_logs_at_the_end(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from landscape.integrations.huggingface import TrackerCallback

    x, y = tiny_data()
    callback = TrackerCallback(data=[{"x": x, "labels": y}], path=tmp_path / "run.h5",
                               batch_loss=dict_batch_loss, measures=["loss"],
                               write_every=10)  # fmt: skip
    torch.manual_seed(0)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=8,
        learning_rate=0.1, report_to=[], save_strategy="no", use_cpu=True,
        disable_tqdm=True, logging_strategy="no", lr_scheduler_type="constant",
    )  # fmt: skip
    transformers.Trainer(model=TinyDictModel(), args=args, train_dataset=dict_examples(x, y),
                         callbacks=[callback]).train()  # fmt: skip
    assert load_tracking(tmp_path / "run.h5").steps.tolist() == [0, 1, 2]
