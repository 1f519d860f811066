"""The loss landscape of a LoRA fine-tune of a tiny GPT-2, in the adapters' own subspace.

A two-layer GPT-2 (random init, built from a config: nothing is downloaded) learns to count
modulo 28 in steps of 1 or 2 (the first token of a sequence says the step), then LoRA
adapters on every attention and MLP input projection learn steps of 3 with the rest frozen.
The batches are Hugging Face style dicts of ragged, padded sequences, and ``loss="causal_lm"``
is the exact mean over every next token of the data (a mean of per-batch means is not).
The plane is spanned by two random directions over the LoRA tensors only
(``params="*.lora_*"``). Left to right: the fine-tuning loss and next-token accuracy over
it, and the loss on the pretraining task over the same plane. Writes
figures/language_model.png. Needs ``pip install landscape[hf]``.

    python examples/language_model.py          # LANDSCAPE_QUICK=1 for a few-second run
"""

import os

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from landscape import Objective, compute_surface, landscape_style, random_directions, save_figure
from landscape.plotting import plot_contourf

QUICK = os.environ.get("LANDSCAPE_QUICK") == "1"
FIGURES = os.environ.get(
    "LANDSCAPE_FIGURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "figures")
)
PERIOD, PAD, MAX_LEN = 28, 31, 16  # tokens 0..27 count, 28..30 give the step, 31 pads


def counting_batches(steps, num, seed, batch_size=32):
    """Dict batches of sequences ``[step marker, s, s + k, s + 2k, ...] mod 28`` of random
    lengths 6 to 16, right-padded; labels are -100 on the padding."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for start in range(0, num, batch_size):
        n = min(batch_size, num - start)
        ids = torch.full((n, MAX_LEN), PAD)
        mask = torch.zeros(n, MAX_LEN, dtype=torch.long)
        for i in range(n):
            length = int(torch.randint(6, MAX_LEN + 1, (1,), generator=g))
            k = steps[int(torch.randint(len(steps), (1,), generator=g))]
            s = int(torch.randint(PERIOD, (1,), generator=g))
            ids[i, :length] = torch.tensor(
                [PERIOD + k - 1] + [(s + j * k) % PERIOD for j in range(length - 1)]
            )
            mask[i, :length] = 1
        batches.append(
            {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}
        )
    return batches


class LoRA(nn.Module):
    """A frozen GPT-2 ``Conv1D`` (``x @ W + b``) plus a trainable ``x @ lora_a @ lora_b``."""

    def __init__(self, base: nn.Module, rank: int = 4):
        super().__init__()
        self.base = base
        nx, nf = base.weight.shape
        self.lora_a = nn.Parameter(torch.randn(nx, rank) / nx**0.5)
        self.lora_b = nn.Parameter(torch.zeros(rank, nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + x @ self.lora_a @ self.lora_b


def train(model, batches, steps, lr):
    """Adam on the trainable parameters; ``model(**batch).loss`` (a per-batch token mean)
    is fine for training, not for measuring."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for step in range(steps):
        loss = model(**batches[step % len(batches)]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


torch.manual_seed(0)  # the model's initialization
config = GPT2Config(vocab_size=32, n_positions=MAX_LEN, n_embd=64, n_layer=2, n_head=4,
                    bos_token_id=PAD, eos_token_id=PAD)  # fmt: skip
model = GPT2LMHeadModel(config)
num, num_eval = (128, 64) if QUICK else (1024, 256)
pretrain, pretrain_eval = counting_batches((1, 2), num, 0), counting_batches((1, 2), num_eval, 1)
finetune, finetune_eval = counting_batches((3,), num, 2), counting_batches((3,), num_eval, 3)
train(model, pretrain, 20 if QUICK else 600, lr=3e-3)

# LoRA on every block's attention and MLP input projections; everything else frozen
model.requires_grad_(False)
for block in model.transformer.h:
    block.attn.c_attn = LoRA(block.attn.c_attn)
    block.mlp.c_fc = LoRA(block.mlp.c_fc)
before = Objective(model, finetune_eval, loss="causal_lm")()
train(model, finetune, 15 if QUICK else 400, lr=3e-3)

objective = Objective(model, finetune_eval, loss="causal_lm")
centre = objective()
with torch.no_grad():  # what to avoid: each batch's token mean, averaged over batches
    per_batch = np.mean([float(model(**b).loss) for b in finetune_eval])
print(f"fine-tuning loss {before['loss']:.4f} -> {centre['loss']:.4f} (accuracy "
      f"{before['accuracy']:.3f} -> {centre['accuracy']:.3f}) over {objective.num_examples} "
      f"tokens; the mean of per-batch means says {per_batch:.4f}")  # fmt: skip

# two random directions over the LoRA tensors only, filter-normalized
directions = random_directions(model, seed=0, params="*.lora_*")
n = 5 if QUICK else 21
xs = ys = np.linspace(-1.0, 1.0, n)
surface = compute_surface(objective, directions, xs, ys, progress=False)
old_task = compute_surface(Objective(model, pretrain_eval, loss="causal_lm"), directions, xs, ys,
                           progress=False)  # fmt: skip

with landscape_style():
    fig = Figure(figsize=(11, 3.3), layout="constrained")
    axes = fig.subplots(1, 3)
    plot_contourf(surface, "loss", axes[0]).set_title("fine-tuning loss (steps of 3)")
    plot_contourf(surface, "accuracy", axes[1]).set_title("next-token accuracy")
    plot_contourf(old_task, "loss", axes[2]).set_title("pretraining loss (steps of 1, 2)")
    print(save_figure(fig, os.path.join(FIGURES, "language_model.png")))
