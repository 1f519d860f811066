"""Dict batches, model outputs and exact token-weighted language-model losses.

Every value is checked against an independent float64 computation at the token level: all
non-ignored tokens of the data set concatenated, one mean. The batches are ragged (different
sizes and lengths), padded, and hold labels of -100, so that a mean of per-batch means (what
``model(**batch).loss`` gives) would differ.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _host_reads import HostReads
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from landscape import compare_checkpoints, compute_surface, random_directions
from landscape.hessian import HessianOperator
from landscape.objective import Objective
from landscape.sharpness import sharpness

f64 = torch.float64
V = 50


def make_batches() -> list[dict[str, torch.Tensor]]:
    """Three ragged batches: padding and -100 labels; the second has no labels (they come
    from ``input_ids`` with padding ignored); the last holds one sequence."""
    g = torch.Generator().manual_seed(0)
    ids = [torch.randint(0, V, shape, generator=g) for shape in ((4, 8), (3, 6), (1, 8))]
    masks = [torch.ones_like(t) for t in ids]
    masks[0][1, 5:] = 0
    masks[0][3, 2:] = 0
    masks[1][0, 4:] = 0
    labels = ids[0].masked_fill(masks[0] == 0, -100)
    labels[2, 3] = -100
    return [
        {"input_ids": ids[0], "attention_mask": masks[0], "labels": labels},
        {"input_ids": ids[1], "attention_mask": masks[1]},
        {"input_ids": ids[2], "attention_mask": masks[2], "labels": ids[2].clone()},
    ]


def token_losses(logits: torch.Tensor, batch: dict, shift: bool = True) -> torch.Tensor:
    """Per-token cross-entropies of the non-ignored tokens, in float64, by hand."""
    labels = batch.get("labels")
    if labels is None:
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    kept = labels != -100
    return F.cross_entropy(logits[kept].to(f64), labels[kept], reduction="none")


def reference(model: nn.Module, batches, weights=None, shift: bool = True) -> torch.Tensor:
    """The mean over every non-ignored token of the data, at ``weights`` (default: the
    model's), the model called on each batch without its labels."""
    if weights is None:
        weights = {n: p.detach() for n, p in model.named_parameters()}
    losses = []
    for batch in batches:
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
        out = functional_call(model, weights, (), inputs)
        losses.append(token_losses(getattr(out, "logits", out), batch, shift))
    return torch.cat(losses).mean()


def snapshot(model: nn.Module):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
    )


def assert_unchanged(model: nn.Module, before) -> None:
    state, flags = before
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in state.items())
    assert [m.training for m in model.modules()] == flags


def grid_reference(model, batches, dirs, x, y) -> np.ndarray:
    base = dict(model.named_parameters())
    out = np.empty((len(x), len(y)))
    with torch.no_grad():
        for i, a in enumerate(x):
            for j, b in enumerate(y):
                point = {n: w + a * dirs.x[n] + b * dirs.y[n] for n, w in base.items()}
                out[i, j] = float(reference(model, batches, point))
    return out


class DictLM(nn.Module):
    """A plain causal model called as ``model(input_ids=..., attention_mask=...)``: each
    position sees the mean embedding of the unmasked tokens up to it."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, 8)
        self.head = nn.Linear(8, V)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(self.embed.weight.dtype)
        seen = (self.embed(input_ids) * mask).cumsum(1) / mask.cumsum(1).clamp(min=1)
        return self.head(torch.tanh(seen))


@pytest.fixture(scope="module")
def dict_lm() -> DictLM:
    torch.manual_seed(0)
    return DictLM().double().eval()


def test_token_losses_are_means_over_every_token(dict_lm):
    batches = make_batches()
    before = snapshot(dict_lm)
    for loss, shift in (("causal_lm", True), ("token_ce", False)):
        objective = Objective(dict_lm, batches, loss=loss)
        values = objective()
        expected = float(reference(dict_lm, batches, None, shift))
        assert values["loss"] == pytest.approx(expected, abs=1e-12)
        with torch.no_grad():
            logits = [dict_lm(b["input_ids"], b["attention_mask"]) for b in batches]
            tokens = torch.cat(
                [token_losses(o, b, shift) for o, b in zip(logits, batches, strict=True)]
            )
            hits = 0
            for o, b in zip(logits, batches, strict=True):
                labels = b.get("labels", b["input_ids"].masked_fill(b["attention_mask"] == 0, -100))
                if shift:
                    o, labels = o[:, :-1], labels[:, 1:]
                hits += int((o.argmax(-1) == labels).sum())
        assert objective.num_examples == len(tokens)
        assert values["accuracy"] == pytest.approx(hits / len(tokens), abs=1e-15)
        # a mean of per-batch means weighs the one-sequence batch as much as the others
        per_batch = [token_losses(o, b, shift).mean() for o, b in zip(logits, batches, strict=True)]
        assert abs(float(torch.stack(per_batch).mean()) - values["loss"]) > 1e-3
    assert_unchanged(dict_lm, before)


def test_dict_batches_on_a_surface_with_one_and_several_points_per_pass(dict_lm):
    batches = make_batches()
    dirs = random_directions(dict_lm, seed=1)
    x, y = [-0.5, 0.0, 0.5], [-0.25, 0.0, 0.25]
    before = snapshot(dict_lm)
    expected = grid_reference(dict_lm, batches, dirs, x, y)
    for k in (1, 4):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # vmap maps this model: no fallback
            surface = compute_surface(
                dict_lm, batches, dirs, x, y, loss="causal_lm", points_per_pass=k, progress=False
            )
        np.testing.assert_allclose(surface["loss"], expected, rtol=0, atol=1e-12)
    assert_unchanged(dict_lm, before)


def test_dict_batches_in_a_comparison(dict_lm):
    other = copy.deepcopy(dict_lm)
    with torch.no_grad():
        other.head.bias.add_(0.1)
    batches = make_batches()
    result = compare_checkpoints(
        dict_lm, {"a": dict_lm, "b": other}, batches, loss="causal_lm", measures=["avg_l2"],
        line=(-0.5, 0.0, 0.5), num_directions=1, num_samples=2, progress=False,
    )  # fmt: skip
    for label, model in (("a", dict_lm), ("b", other)):
        expected = float(reference(model, batches))
        assert result.evaluation[label]["train_loss"] == pytest.approx(expected, abs=1e-12)
        assert result.lines[label]["loss"][0, 1] == pytest.approx(expected, abs=1e-12)


def test_outputs_as_model_outputs_dicts_and_tuples():
    class Wrapped(DictLM):
        def __init__(self, kind: str):
            super().__init__()
            self.kind = kind

        def forward(self, input_ids, attention_mask):
            logits = super().forward(input_ids, attention_mask)
            if self.kind == "dict":
                return {"loss": None, "logits": logits}
            return (logits, None)

    def value(model: nn.Module) -> float:
        return Objective(model.double(), make_batches(), loss="causal_lm")()["loss"]

    models = {}
    for kind in ("dict", "tuple", "tensor"):
        torch.manual_seed(0)
        models[kind] = DictLM() if kind == "tensor" else Wrapped(kind)
    assert value(models["dict"]) == value(models["tuple"]) == value(models["tensor"])


# ---------------------------------------------------------------- a tiny GPT-2
@pytest.fixture(scope="module")
def gpt2() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        vocab_size=V, n_positions=16, n_embd=32, n_layer=2, n_head=2, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).double().eval()
    assert model.lm_head.weight is model.transformer.wte.weight  # tied: one parameter
    return model


def test_gpt2_surface_equals_token_level_computation(gpt2):
    batches = make_batches()
    dirs = random_directions(gpt2, seed=0)
    x, y = [-0.5, 0.0, 0.5], [-0.5, 0.0, 0.5]
    before = snapshot(gpt2)
    surface = compute_surface(gpt2, batches, dirs, x, y, loss="causal_lm", progress=False)
    assert_unchanged(gpt2, before)
    np.testing.assert_allclose(
        surface["loss"], grid_reference(gpt2, batches, dirs, x, y), atol=1e-10, rtol=0
    )
    centre = Objective(gpt2, batches, loss="causal_lm")()["loss"]
    assert surface["loss"][1, 1] == centre
    assert centre == pytest.approx(float(reference(gpt2, batches)), abs=1e-12)
    assert_unchanged(gpt2, before)

    # several points per pass: vmap maps the model, or it falls back with one warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batched = compute_surface(
            gpt2, batches, dirs, x, y, loss="causal_lm", points_per_pass=4, progress=False
        )
    fallbacks = [w for w in caught if "one point at a time" in str(w.message)]
    assert len(fallbacks) <= 1
    np.testing.assert_allclose(batched["loss"], surface["loss"], atol=1e-10, rtol=0)
    np.testing.assert_allclose(batched["accuracy"], surface["accuracy"], atol=1e-12, rtol=0)
    assert_unchanged(gpt2, before)


def test_gpt2_hessian_vector_product_equals_autograd(gpt2):
    batches = make_batches()
    before = snapshot(gpt2)
    operator = HessianOperator(Objective(gpt2, batches, loss="causal_lm"))
    names = list(operator.names)
    weights = {n: p.detach() for n, p in gpt2.named_parameters()}
    assert names == list(weights)
    v = torch.randn(operator.num_params, dtype=f64, generator=torch.Generator().manual_seed(0))

    leaves = [weights[n].clone().requires_grad_(True) for n in names]
    with sdpa_kernel(SDPBackend.MATH):  # the fused attention kernels have no double backward
        loss = reference(gpt2, batches, dict(zip(names, leaves, strict=True)))
        grads = torch.autograd.grad(loss, leaves, create_graph=True)
    flat_grad = torch.cat([g.reshape(-1) for g in grads])
    expected = torch.cat([h.reshape(-1) for h in torch.autograd.grad(flat_grad @ v, leaves)])

    got = operator.matvec(v)
    assert operator.loss == pytest.approx(loss.item(), abs=1e-12)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-9)
    assert_unchanged(gpt2, before)


def test_gpt2_sharpness_runs(gpt2):
    batches = make_batches()
    before = snapshot(gpt2)
    objective = Objective(gpt2, batches, loss="causal_lm")
    result = sharpness(objective, "avg_l2", rho=0.05, num_samples=2, seed=0, progress=False)
    assert np.isfinite(result["avg_l2"].value)
    assert_unchanged(gpt2, before)


@pytest.mark.parametrize("points_per_pass", [1, 3])
def test_the_point_loop_reads_no_scalar_from_the_device(dict_lm, points_per_pass):
    """Token counts and sums stay on the device until one read at the end, so the scalar
    reads of an evaluation do not grow with its points."""
    objective = Objective(
        dict_lm, make_batches(), loss="causal_lm", points_per_pass=points_per_pass
    )
    direction = [{n: torch.randn_like(p) for n, p in dict_lm.named_parameters()}]
    reads = []
    for num in (2, 7):
        counter = HostReads()
        with counter:
            objective.evaluate_points(
                objective.base_state, direction, np.linspace(-1, 1, num)[:, None]
            )
        reads.append(counter.count)
    assert reads[0] == reads[1], reads
