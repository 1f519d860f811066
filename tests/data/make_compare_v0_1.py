"""Make ``compare_v0_1.h5``: a small comparison file written by landscape 0.1.0.

Run with landscape 0.1.0 on the path (``PYTHONPATH=/path/to/landscape-0.1.0 python
tests/data/make_compare_v0_1.py``); ``tests/test_compare.py`` checks that the current
version resumes it (reads every checkpoint back, computes nothing), rebuilding the same
models and data from :func:`models_and_data` and the settings from :data:`SETTINGS`.
"""

import os

import torch
from torch import nn


def models_and_data():
    """The architecture, two checkpoints and 20 examples, all from a seeded generator."""
    g = torch.Generator().manual_seed(0)

    def mlp():
        model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
        return model

    arch, first, second = mlp(), mlp(), mlp()
    inputs = torch.randn(20, 3, generator=g, dtype=torch.float64)
    data = (inputs, torch.randint(0, 2, (20,), generator=g))
    return arch, {"first": first, "second": second.state_dict()}, data


SETTINGS = dict(measures=["avg_l2", "rise"], line=[-1.0, 0.0, 1.0], num_directions=2,
                plane=([-1.0, 1.0], [0.0, 1.0]), num_samples=3, seed=1, progress=False)  # fmt: skip

if __name__ == "__main__":
    from landscape.compare import compare_checkpoints

    arch, checkpoints, data = models_and_data()
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compare_v0_1.h5")
    compare_checkpoints(arch, checkpoints, data, path=path, overwrite=True, **SETTINGS)
