"""Tracker callbacks for the Hugging Face Trainer and PyTorch Lightning, on tiny models."""

from __future__ import annotations

import subprocess
import sys

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


def test_import_landscape_imports_no_framework():
    code = "import sys, landscape; print('transformers' in sys.modules, 'lightning' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False False"


def test_huggingface_trainer_callback_logs_every_step(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # the Trainer needs it
    from landscape.integrations.huggingface import TrackerCallback

    Tiny, batch_loss = TinyDictModel, dict_batch_loss
    x, y = tiny_data()
    train = dict_examples(x, y)

    torch.manual_seed(0)
    model = Tiny()
    tracker = Tracker([{"x": x, "labels": y}], path=tmp_path / "run.h5", batch_loss=batch_loss,
                      measures=["loss", "lambda_max"], lr=0.1)  # fmt: skip
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=8,
        learning_rate=0.1, report_to=[], save_strategy="no", use_cpu=True,
        disable_tqdm=True, logging_strategy="no",
    )  # fmt: skip
    trainer = transformers.Trainer(model=model, args=args, train_dataset=train,
                                   callbacks=[TrackerCallback(tracker)])  # fmt: skip
    trainer.train()
    run = load_tracking(tmp_path / "run.h5")
    assert run.steps.tolist() == [0, 1, 2, 3]
    with torch.no_grad():
        loss = batch_loss(model, {"x": x, "labels": y})[0] / len(y)
    assert run.values["loss"][-1] == pytest.approx(float(loss), rel=1e-6)


def test_lightning_callback_logs_every_step(tmp_path):
    lightning = pytest.importorskip("lightning.pytorch")
    from landscape.integrations.lightning import TrackerCallback

    Tiny = lightning_module(lightning)

    x, y = tiny_data()
    torch.manual_seed(0)
    module = Tiny()
    tracker = Tracker((x, y), path=tmp_path / "run.h5", measures=["loss", "lambda_max"])
    trainer = lightning.Trainer(
        max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[TrackerCallback(tracker)],
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    trainer.fit(module, loader)
    run = load_tracking(tmp_path / "run.h5")
    assert run.steps.tolist() == [0, 1, 2, 3]
    with torch.no_grad():
        loss = nn.functional.cross_entropy(module(x), y)
    assert run.values["loss"][-1] == pytest.approx(float(loss), rel=1e-6)
