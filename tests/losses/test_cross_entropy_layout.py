"""The float64 cross-entropy of few classes takes the classes as columns from 512 examples on
a CPU (issue 25, item 4): a digits batch of 773 examples went through rows of 10 classes,
1.4x slower, and a surface point of the digits MLP paid it on every point. Same sums and
derivatives as ``F.cross_entropy`` in float64 either way."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from landscape.losses import cross_entropy_sum, per_example


@pytest.mark.parametrize("examples, columns", [(511, False), (512, True), (773, True)])
def test_few_classes_go_by_columns_from_512_examples(monkeypatch, examples, columns):
    g = torch.Generator().manual_seed(examples)
    logits = torch.randn(examples, 10, generator=g).requires_grad_(True)
    labels = torch.randint(0, 10, (examples,), generator=g)
    labels[::9] = -100
    shapes = []
    real = F.cross_entropy

    def recording(inputs, *args, **kwargs):
        shapes.append(tuple(inputs.shape))
        return real(inputs, *args, **kwargs)

    monkeypatch.setattr(per_example.F, "cross_entropy", recording)
    ours = cross_entropy_sum(logits, labels)
    monkeypatch.undo()
    assert shapes == [(1, 10, examples) if columns else (examples, 10)]
    reference = F.cross_entropy(logits.double(), labels, reduction="sum")
    assert ours.dtype == torch.float64
    assert float(ours) == pytest.approx(float(reference), rel=1e-14)
    ours_grad, reference_grad = (torch.autograd.grad(v, logits)[0] for v in (ours, reference))
    torch.testing.assert_close(ours_grad, reference_grad, rtol=0, atol=1e-7)
