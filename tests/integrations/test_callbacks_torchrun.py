"""The Lightning callback under torchrun (a DDP strategy on 2 gloo ranks): each step is
recorded once, by rank 0, with the values of a one-process run of the same training.

This file is also the worker: ``torchrun ... tests/integrations/test_callbacks_torchrun.py OUT``.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))


def train(path: str, devices: int, batch_size: int) -> None:
    """Two SGD steps of a tiny module with the callback; ``devices`` ranks of
    ``batch_size`` examples each make one step over all 16 examples."""
    import lightning.pytorch as lightning

    from landscape.integrations.lightning import TrackerCallback

    class Tiny(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.linear = nn.Linear(4, 2).double()

        def forward(self, x):
            return self.linear(x)

        def training_step(self, batch, batch_idx):
            return nn.functional.cross_entropy(self(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.5)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4, generator=g, dtype=torch.float64)
    y = (x[:, 0] > 0).long()
    callback = TrackerCallback(data=(x, y), path=path, measures=["loss", "lambda_max"])
    trainer = lightning.Trainer(
        max_steps=2, accelerator="cpu", devices=devices,
        strategy="ddp" if devices > 1 else "auto", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[callback],
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size)
    trainer.fit(Tiny(), loader)


@pytest.mark.slow  # torchrun with two ranks importing Lightning: 17 s (50 s on a loaded machine)
def test_lightning_callback_under_torchrun_records_each_step_once(tmp_path):
    pytest.importorskip("lightning.pytorch")
    from _torchrun import torchrun

    from landscape import load_tracking

    done = torchrun(os.path.join(HERE, "test_callbacks_torchrun.py"), str(tmp_path / "ranks.h5"))
    assert done.returncode == 0, done.stderr[-3000:]
    train(str(tmp_path / "single.h5"), devices=1, batch_size=16)
    single, ranks = load_tracking(tmp_path / "single.h5"), load_tracking(tmp_path / "ranks.h5")
    assert ranks.steps.tolist() == single.steps.tolist() == [0, 1, 2]  # once each
    for name in ("loss", "lambda_max"):
        np.testing.assert_allclose(ranks.values[name], single.values[name], rtol=1e-9)


if __name__ == "__main__":
    train(sys.argv[1], devices=2, batch_size=8)
