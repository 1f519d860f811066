"""Make ``surface_v0_1.h5``: a small surface file written by landscape 0.1.0.

Run with landscape 0.1.0 on the path (``PYTHONPATH=/path/to/landscape-0.1.0 python
tests/data/make_surface_v0_1.py``); ``tests/test_storage.py`` checks that the current
version still reads it, rebuilding the same model and data from :func:`model_and_data`.
"""

import os

import torch
from torch import nn


def model_and_data():
    """A float64 MLP with BatchNorm and 12 examples, all drawn from a seeded generator."""
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).double()
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=g, dtype=torch.float64) + 0.1)
    inputs = torch.randn(12, 3, generator=g, dtype=torch.float64)
    return model.eval(), (inputs, torch.randint(0, 2, (12,), generator=g))


ATTRS = {"model": "fixture", "tags": ["a", "b"], "note": None, "sizes": [1, 2]}
X, Y = [-1.0, 0.0, 1.0], [0.0, 0.5]

if __name__ == "__main__":
    from landscape.directions import random_directions
    from landscape.surface import compute_surface

    model, data = model_and_data()
    directions = random_directions(model, seed=0, orthogonalize=True)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "surface_v0_1.h5")
    compute_surface(model, data, directions, X, Y, attrs=ATTRS, path=path, overwrite=True,
                    progress=False)  # fmt: skip
