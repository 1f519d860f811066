"""Curvature per block of a tiny GPT-2: which layer is sharpest?

A four-layer GPT-2 (random init, built from a config: nothing is downloaded) learns to
count modulo 28 in steps of 1 or 2 (the first token says the step). Then
``block_curvature`` gives, for each block of weights (the token and position embeddings,
each ``transformer.h.{i}``, the final layer norm; the output head is tied to the token
embedding), the top eigenvalue and the trace of the block's own Hessian ``H_bb`` (the other
weights held fixed), the trace with its standard error. Prints the table and writes
figures/block_curvature.png. Needs ``pip install landscape[hf]``.

    python examples/block_curvature.py   # minutes on 2 CPU cores; LANDSCAPE_QUICK=1 for fewer steps
"""

import os

import torch
from matplotlib.figure import Figure
from transformers import GPT2Config, GPT2LMHeadModel

from landscape import Objective, block_curvature, landscape_style, save_figure
from landscape.plotting import plot_block_curvature

QUICK = os.environ.get("LANDSCAPE_QUICK") == "1"
FIGURES = os.environ.get(
    "LANDSCAPE_FIGURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "figures")
)
PERIOD, LENGTH = 28, 12  # tokens 0..27 count, 28 and 29 give the step


def counting_batches(num, seed, batch_size=32):
    """Dict batches of sequences ``[step marker, s, s + k, s + 2k, ...] mod 28``."""
    g = torch.Generator().manual_seed(seed)
    step = torch.randint(1, 3, (num, 1), generator=g)
    start = torch.randint(PERIOD, (num, 1), generator=g)
    ids = torch.cat([PERIOD + step - 1, (start + step * torch.arange(LENGTH - 1)) % PERIOD], 1)
    return [{"input_ids": b, "labels": b} for b in ids.split(batch_size)]


torch.manual_seed(0)  # the model's initialization
config = GPT2Config(vocab_size=30, n_positions=LENGTH, n_embd=32, n_layer=4, n_head=2,
                    bos_token_id=0, eos_token_id=0, attn_implementation="eager")  # fmt: skip
model = GPT2LMHeadModel(config)
train_batches, eval_batches = counting_batches(2048, 0), counting_batches(32 if QUICK else 128, 1)
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
for step in range(20 if QUICK else 400):
    loss = model(**train_batches[step % len(train_batches)]).loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
model.eval()

objective = Objective(model, eval_batches, loss="causal_lm")
print(f"loss {objective()['loss']:.4f} over {objective.num_examples} tokens")
budget = dict(num_probes=6, max_hvps=40) if QUICK else dict(num_probes=30)
result = block_curvature(objective, **budget, progress=False)
print(result.table())

with landscape_style():
    fig = Figure(figsize=(6.5, 3.4), layout="constrained")
    ax = plot_block_curvature(result, fig.add_subplot(), log=True)
    ax.set_title("curvature of each block of a tiny GPT-2")
    print(save_figure(fig, os.path.join(FIGURES, "block_curvature.png")))
