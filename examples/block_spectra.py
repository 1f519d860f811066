"""Block spectra of a small CNN and a small transformer (Zhang et al. 2024, "Why Transformers
Need Adam: A Hessian Perspective"): how alike are the spectra of their blocks, and how far is
each Hessian from block-diagonal?

Both models are trained briefly (Adam) on synthetic tasks, then ``block_curvature`` with
``densities=True`` gives each weight matrix's Hessian block ``H_bb`` its spectral density
(stochastic Lanczos quadrature, all blocks on one grid) and the Jensen-Shannon distance
between every two blocks' densities, and ``off_block=True`` the share of the Hessian that a
block-diagonal approximation drops. Prints both tables and writes figures/block_spectra.png
(the distance matrices of the two models side by side).

    python examples/block_spectra.py   # minutes on 2 CPU cores; LANDSCAPE_QUICK=1 for fewer steps
"""

import os

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from landscape import Objective, block_curvature, landscape_style, save_figure
from landscape.plotting import plot_block_js_distance

QUICK = os.environ.get("LANDSCAPE_QUICK") == "1"
FIGURES = os.environ.get(
    "LANDSCAPE_FIGURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "figures")
)
VOCAB, LENGTH, WIDTH = 8, 6, 16


class TinyTransformer(nn.Module):
    """Token embedding, two post-norm encoder layers, a head on the mean over positions."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, WIDTH)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(WIDTH, 2, 2 * WIDTH, dropout=0.0, batch_first=True)
            for _ in range(2)
        )
        self.head = nn.Linear(WIDTH, VOCAB)

    def forward(self, tokens):
        x = self.emb(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.head(x.mean(1))


def cnn():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(16, 4),
    )  # fmt: skip


def tasks(num, seed):
    """Images labelled by a random linear teacher; sequences labelled by their most common
    token."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(num, 1, 8, 8, generator=g)
    teacher = torch.randn(64, 4, generator=torch.Generator().manual_seed(99))
    tokens = torch.randint(VOCAB, (num, LENGTH), generator=g)
    counts = nn.functional.one_hot(tokens, VOCAB).sum(1)
    return (images, (images.flatten(1) @ teacher).argmax(1)), (tokens, counts.argmax(1))


def train(model, data, steps):
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(data[0]), data[1])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def matrices(model):
    """A block a weight matrix (each conv, the attention's packed Q/K/V and output, each MLP
    layer, the embedding, the head), as Zhang et al. partition them."""
    return [n for n, p in model.named_parameters() if p.dim() > 1]


torch.manual_seed(0)  # the models' initialization
(images, image_labels), (tokens, token_labels) = tasks(64 if QUICK else 128, 0)
models = {
    "CNN": (train(cnn(), (images, image_labels), 20 if QUICK else 300), (images, image_labels)),
    "transformer": (
        train(TinyTransformer(), (tokens, token_labels), 20 if QUICK else 300),
        (tokens, token_labels),
    ),
}
budget = {
    "num_probes": 4 if QUICK else 20,
    "num_off_block_probes": 4 if QUICK else 30,
    "num_density_probes": 2 if QUICK else 6,
    "num_lanczos_steps": 6 if QUICK else 30,
    "max_hvps": 30 if QUICK else 200,
}
results = {}
for name, (model, data) in models.items():
    objective = Objective(model, data)
    blocks = matrices(model)
    results[name] = block_curvature(objective, blocks, off_block=True, densities=True,
                                    progress=False, **budget)  # fmt: skip
    result = results[name]
    off_diagonal = result.js_distance[~np.eye(len(blocks), dtype=bool)]
    print(f"{name}: loss {objective()['loss']:.3f}; mean JS distance between blocks "
          f"{off_diagonal.mean():.3f}; off-block share of the whole Hessian "
          f"{result.off_block['share']:.3f} ± {result.off_block['stderr']:.3f}")  # fmt: skip
    print(result.table())

with landscape_style():
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    for ax, (name, result) in zip(fig.subplots(1, 2), results.items(), strict=True):
        plot_block_js_distance(result, ax, annotate=len(result.values) <= 8)
        ax.set_title(f"{name}: JS distance between blocks' spectra")
    print(save_figure(fig, os.path.join(FIGURES, "block_spectra.png")))
