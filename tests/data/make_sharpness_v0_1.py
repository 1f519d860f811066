"""Make ``sharpness_v0_1.h5``: sharpness results written by landscape 0.1.0.

Run with landscape 0.1.0 on the path (``PYTHONPATH=/path/to/landscape-0.1.0 python
tests/data/make_sharpness_v0_1.py``); ``tests/test_sharpness.py`` checks that the current
version loads it.
"""

import os

import torch
from torch import nn

if __name__ == "__main__":
    from landscape.evaluate import Objective
    from landscape.sharpness import save_sharpness, sharpness

    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.randn(12, 3, generator=g, dtype=torch.float64)
    objective = Objective(model, (x, torch.randint(0, 2, (12,), generator=g)))
    names = ["keskar", "worst_l2", "avg_l2", "pacbayes_mag", "relative_flatness"]
    results = sharpness(objective, names, num_samples=4, num_steps=3, seed=0)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sharpness_v0_1.h5")
    save_sharpness(path, results, overwrite=True)
