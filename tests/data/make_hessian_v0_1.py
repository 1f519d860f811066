"""Make ``hessian_v0_1.h5``: Hessian results written by landscape 0.1.0.

Run with landscape 0.1.0 on the path (``PYTHONPATH=/path/to/landscape-0.1.0 python
tests/data/make_hessian_v0_1.py``); ``tests/test_hessian.py`` checks that the current
version loads it.
"""

import os

import torch
from torch import nn

if __name__ == "__main__":
    from landscape.evaluate import Objective
    from landscape.hessian import (
        extreme_eigenvalues,
        hessian_eigenpairs,
        hessian_trace,
        save_hessian,
        spectral_density,
    )

    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.randn(12, 3, generator=g, dtype=torch.float64)
    objective = Objective(model, (x, torch.randint(0, 2, (12,), generator=g)))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hessian_v0_1.h5")
    if os.path.exists(path):
        os.remove(path)
    save_hessian(
        path,
        eigen=hessian_eigenpairs(objective, k=3),
        trace=hessian_trace(objective, num_probes=9),
        density=spectral_density(objective, num_probes=2, num_steps=5, num_grid=50),
        extremes=extreme_eigenvalues(objective),
    )
