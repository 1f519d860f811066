"""The loss landscape of a ResNet-20 with BatchNorm around its minimum (Li et al. 2018).

A CIFAR ResNet-20 (He et al. 2016, 0.27M parameters, built in ``landscape.models``) trains
for ten epochs on 1,024 CIFAR-shaped images generated in code (noise plus a faint colour
pattern per class: nothing is downloaded), to a training loss of about 3e-4. Around the
trained weights, two random directions normalized filter by filter, with biases and
BatchNorm parameters left still (``ignore="biasbn"``, Li et al.'s setting), span a plane;
the model is evaluated in eval mode, its running statistics as they are. Left to right:
the training loss (contours, on a log scale when it spans decades), the training accuracy,
and the loss as a 3D surface, over the first 256 training images.
Writes figures/resnet_landscape.png.

    python examples/resnet_landscape.py     # under two minutes on 2 CPU cores
    LANDSCAPE_QUICK=1 python examples/resnet_landscape.py   # seconds

Your model: any ``nn.Module`` with its checkpoint loaded, and a DataLoader or
``(inputs, targets)`` of your evaluation data in place of ``cifar_like``.
"""

import os

import numpy as np
from matplotlib.figure import Figure

from landscape import Objective, compute_surface, landscape_style, random_directions, save_figure
from landscape.demo import train_classifier
from landscape.models import cifar_like, cifar_resnet
from landscape.plotting import plot_contour, plot_contourf, plot_surface3d

QUICK = os.environ.get("LANDSCAPE_QUICK") == "1"
FIGURES = os.environ.get(
    "LANDSCAPE_FIGURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "figures")
)

num_train, epochs, num_eval, n = (128, 1, 32, 3) if QUICK else (1024, 10, 256, 21)
train = cifar_like(num_train, seed=1, signal=0.3)
model = train_classifier(
    cifar_resnet(20), train, lr=0.05, batch_size=64, epochs=epochs, progress=False
)

# the plane is evaluated on the first examples of the training set (exact means over them)
subset = (train[0][:num_eval], train[1][:num_eval])
objective = Objective(model, subset, batch_size=128)
print(f"at the checkpoint: {objective()}")
directions = random_directions(model, seed=0, norm="filter", ignore="biasbn")
xs = ys = np.linspace(-1.0, 1.0, n)
surface = compute_surface(objective, directions, xs, ys, progress=not QUICK)

with landscape_style():
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    left, middle = fig.add_subplot(1, 3, 1), fig.add_subplot(1, 3, 2)
    right = fig.add_subplot(1, 3, 3, projection="3d")
    plot_contour(surface, "loss", left).set_title("training loss")
    plot_contourf(surface, "accuracy", middle).set_title("training accuracy")
    plot_surface3d(surface, "loss", right).set_title("training loss")
    print(save_figure(fig, os.path.join(FIGURES, "resnet_landscape.png")))
