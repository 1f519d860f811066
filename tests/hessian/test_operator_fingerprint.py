"""``HessianOperator(fingerprint=False)``: the same products, no pass over the weights to
fingerprint the point (the Tracker builds one such operator a log)."""

from __future__ import annotations

import torch
from torch import nn

from landscape.hessian import HessianOperator
from landscape.objective import Objective


def test_without_fingerprints_the_products_are_the_same_and_no_hash_is_kept():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    data = (torch.randn(16, 3), torch.randint(0, 2, (16,)))
    objective = Objective(model, data)
    plain = HessianOperator(objective)
    light = HessianOperator(objective, fingerprint=False)
    vector = torch.randn(plain.size)
    assert torch.equal(plain @ vector, light @ vector)
    assert torch.equal(plain.float64() @ vector.double(), light.float64() @ vector.double())
    for op in (light, light.float64()):
        assert "checkpoint_sha256" not in op.settings and "state_sha256" not in op.settings
    assert {"checkpoint_sha256", "state_sha256"} <= set(plain.float64().settings)
    dropped = {"checkpoint_sha256", "state_sha256"}
    assert {k: v for k, v in plain.settings.items() if k not in dropped} == light.settings
