"""Which sharpness measure ranks models by their generalization gap? A study of 24 models.

Digits MLPs trained by SGD over a grid of learning rate x batch size x weight decay
(3 x 4 x 2), each compared on its training data with cheap measures
(:func:`landscape.compare_checkpoints`), then ranked against its generalization gap (train
minus test accuracy) with :func:`landscape.correlate`: Kendall's tau with a bootstrap
interval, and Jiang et al.'s (2020) granulated tau, the mean over hyperparameters of the
tau among models that differ in that hyperparameter only. Writes
figures/generalization_study.png and prints the table.

    python examples/generalization_study.py       # LANDSCAPE_QUICK=1 for a short run
"""

import itertools
import os
import tempfile

from matplotlib.figure import Figure

from landscape import compare_checkpoints, correlate, landscape_style, plot_correlation, save_figure
from landscape.demo import digits_data, digits_mlp, train_classifier

QUICK = os.environ.get("LANDSCAPE_QUICK") == "1"
FIGURES = os.environ.get(
    "LANDSCAPE_FIGURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "figures")
)
train, test = digits_data("train"), digits_data("test")
if QUICK:
    train, test = (train[0][:300], train[1][:300]), (test[0][:100], test[1][:100])

grid = {
    "lr": (0.01, 0.1) if QUICK else (0.01, 0.03, 0.1),
    "batch_size": (16, 256) if QUICK else (16, 64, 256, 1024),
    "weight_decay": (0.0, 1e-3),
}
checkpoints, hparams = {}, {}
for lr, batch_size, weight_decay in itertools.product(*grid.values()):
    label = f"lr{lr:g}-b{batch_size}-wd{weight_decay:g}"
    checkpoints[label] = train_classifier(
        digits_mlp(seed=0), train, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
        steps=50 if QUICK else 1500, seed=0, progress=False,
    ).state_dict()  # fmt: skip
    hparams[label] = {"lr": lr, "batch_size": batch_size, "weight_decay": weight_decay}

measures = ["lambda_max", "trace", "fisher_rao", "avg_l2", "adaptive_avg_l2", "rise", "pacbayes"]
with tempfile.TemporaryDirectory() as tmp:
    comparison = compare_checkpoints(
        digits_mlp(), checkpoints, train, test_data=test, measures=measures, line=[0.0],
        num_directions=1, path=f"{tmp}/compare.h5", progress=False,
        num_samples=5 if QUICK else 50,
    )  # fmt: skip
    found = correlate(f"{tmp}/compare.h5", hparams, num_bootstrap=2000, seed=0)

gaps = found.gap
print(f"{len(found.labels)} models; accuracy gap {gaps.min():.3f} .. {gaps.max():.3f}")
print(found.to_markdown())
with landscape_style():
    fig = plot_correlation(found, fig=Figure(figsize=(11.6, 5.2), layout="constrained"))
    print(save_figure(fig, os.path.join(FIGURES, "generalization_study.png")))
