"""Issue 25, item 1: the top 5 of an MLP's Hessian at the defaults within 25 model sizes
above the baseline, every tensor of the call counted (the operator's copies and
temporaries, its float64 twin), and the planned bound in the result above that peak.

Version 0.3.0 built the float64 twin (a float64 copy of the point) before the first
product, so it was held with the whole float32 basis: 26.7 models tracked at 7.4M
parameters, 27.7 on this scaled-down copy (the model's own weights not counted).
"""

from __future__ import annotations

import pytest
from _live_vectors import LiveVectors
from test_linalg_memory import mlp_objective

from landscape.hessian import hessian_eigenpairs

pytestmark = pytest.mark.usefixtures("small_pieces")


def test_top5_of_an_mlp_hessian_within_25_models_and_its_planned_bound(monkeypatch):
    from landscape.linalg import _krylov, bounds

    monkeypatch.setattr(bounds, "_PIECE_BYTES", _krylov._PIECE_BYTES)  # the bound's gathers
    objective, n = mlp_objective()
    model_bytes = 4 * n
    weights = list(objective.model.parameters())
    with LiveVectors(n, least=64, exclude=weights) as live:
        eigen = hessian_eigenpairs(objective, num_eigenpairs=5, progress=False)
    assert eigen.converged and eigen.settings["num_hvps_float64"] == 5  # verified
    peak = live.peak_bytes / model_bytes
    assert peak <= 25, peak
    planned = eigen.settings["planned_bytes"] / model_bytes
    assert peak <= planned <= 1.5 * peak, (peak, planned)
