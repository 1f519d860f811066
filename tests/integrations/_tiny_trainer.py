"""What the callback tests share: a tiny classification task in the forms the Hugging Face
Trainer takes (a model returning a dict with ``loss``, examples as dicts)."""

from __future__ import annotations

import torch
from torch import nn


def tiny_data(n=16):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] > 0).long()


class TinyDictModel(nn.Module):
    """A linear classifier that takes ``x`` and ``labels`` and returns ``loss`` and ``logits``."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x, labels=None):
        logits = self.linear(x)
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        return {"loss": loss, "logits": logits}


def dict_examples(x, y):
    """The Trainer's examples: one dict an example."""
    return [{"x": x[i], "labels": y[i]} for i in range(len(y))]


def dict_batch_loss(model, batch):
    """The summed cross-entropy of a dict batch, and its size."""
    logits = model(batch["x"])["logits"]
    return nn.functional.cross_entropy(logits, batch["labels"], reduction="sum"), len(logits)


def lightning_module(lightning, momentum: float = 0.0) -> type:
    """A LightningModule class of the linear classifier, trained by SGD (lr 0.1)."""

    class Tiny(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 2)

        def forward(self, x):
            return self.linear(x)

        def training_step(self, batch, batch_idx):
            return nn.functional.cross_entropy(self(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=momentum)

    return Tiny
