"""The callbacks build their Tracker with the trainer's optimizer and a guard (the
``<measure>_threshold`` columns), and under torchrun log on rank 0 alone: rank 1 writes
nothing, and its guard gets rank 0's values."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from _tiny_trainer import (
    TinyDictModel,
    dict_batch_loss,
    dict_examples,
    lightning_module,
    tiny_data,
)
from torch import nn

from landscape import Tracker, load_tracking
from landscape.optim import StabilityGuard


def test_huggingface_callback_passes_the_trainers_adam_and_a_guard(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # the Trainer needs it
    from landscape.integrations.huggingface import TrackerCallback

    Tiny, batch_loss = TinyDictModel, dict_batch_loss
    x, y = tiny_data()
    train = dict_examples(x, y)

    fired = []
    guard = StabilityGuard(fraction=1e-9, patience=1, action=lambda *a, **k: fired.append(a))
    callback = TrackerCallback(data=[{"x": x, "labels": y}], path=tmp_path / "run.h5",
                               batch_loss=batch_loss, guard=guard,
                               measures=["loss", "preconditioned_sharpness"])  # fmt: skip
    torch.manual_seed(0)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=8,
        learning_rate=0.1, report_to=[], save_strategy="no", use_cpu=True,
        disable_tqdm=True, logging_strategy="no", lr_scheduler_type="constant",
    )  # fmt: skip
    transformers.Trainer(model=Tiny(), args=args, train_dataset=train,
                         callbacks=[callback]).train()  # fmt: skip
    run = load_tracking(tmp_path / "run.h5")
    assert run.steps.tolist() == [1, 2]  # Adam has no preconditioner before its first step
    assert run.settings["optimizer"] == "AdamW"  # the Trainer's, unwrapped from accelerate's
    beta1 = 0.9  # the Trainer's default adam_beta1: threshold (2 + 2 beta1) / (lr (1 - beta1))
    expected = (2 + 2 * beta1) / (0.1 * (1 - beta1))
    assert run.values["preconditioned_sharpness_threshold"] == pytest.approx([expected] * 2)
    assert all(math.isfinite(v) for v in run.values["preconditioned_sharpness"])
    assert fired  # the guard saw every measure against its threshold


def test_lightning_callback_passes_the_trainers_sgd(tmp_path):
    lightning = pytest.importorskip("lightning.pytorch")
    from landscape.integrations.lightning import TrackerCallback

    Tiny = lightning_module(lightning, momentum=0.5)

    x, y = tiny_data()
    torch.manual_seed(0)
    callback = TrackerCallback(data=(x, y), path=tmp_path / "run.h5",
                               measures=["loss", "lambda_max"])  # fmt: skip
    trainer = lightning.Trainer(
        max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[callback],
    )  # fmt: skip
    trainer.fit(Tiny(), torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), 8))
    run = load_tracking(tmp_path / "run.h5")
    assert run.steps.tolist() == [0, 1, 2] and run.settings["optimizer"] == "SGD"
    # heavy-ball SGD's threshold (2 + 2 momentum) / lr
    assert run.values["lambda_max_threshold"] == pytest.approx([30.0] * 3)


def test_a_callback_on_rank_1_writes_nothing_and_its_guard_gets_rank_0s_values(
    tmp_path, monkeypatch
):
    pytest.importorskip("transformers")
    from landscape import distributed
    from landscape.integrations.huggingface import TrackerCallback

    sent = {"loss": 0.5, "lambda_max": 25.0, "lambda_max_threshold": 20.0}
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "broadcast_object", lambda obj, src=0: dict(sent))
    fired = []
    guard = StabilityGuard(fraction=1.0, patience=1, action=lambda *a, **k: fired.append(a))
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    tracker = Tracker(tiny_data(), path=tmp_path / "run.h5", measures=["loss", "lambda_max"],
                      optimizer=optimizer, guard=guard)  # fmt: skip
    callback = TrackerCallback(tracker)
    for step in range(3):
        hook = callback.on_train_begin if step == 0 else callback.on_step_end
        hook(None, SimpleNamespace(global_step=step), None, model=model)
    assert not (tmp_path / "run.h5").exists()  # rank 0 alone writes
    assert len(tracker.run.steps) == 0  # nor computed here
    assert fired[0] == ("lambda_max", 25.0, 20.0, 0)  # rank 0's values, seen on rank 1


def test_a_tracker_with_options_beside_it_is_refused():
    pytest.importorskip("transformers")
    from landscape.integrations.huggingface import TrackerCallback

    tracker = Tracker(tiny_data(), measures=["loss"])
    with pytest.raises(ValueError, match=r"expected the Tracker alone, got \['guard'\]"):
        TrackerCallback(tracker, guard=StabilityGuard())
    with pytest.raises(ValueError, match="got neither"):
        TrackerCallback()
