"""Activation matching for Hugging Face GPT-2 and Llama (``method="activations"``), which
``torch.fx`` cannot trace: forward hooks record each group's activations (the probes of
``gpt2_probes`` and ``llama_probes``). A copy permuted in every group (heads as wholes,
the residual stream with ``residual=True``) is recovered exactly: the aligned state is the
original's and so are the logits, to 1e-10 in float64.

``LlamaRMSNorm`` takes its mean square in float32; with the residual stream permuted that
sum is reordered, so the Llama tests compute it in float64 (as ``test_llama_residual.py``
does) to compare logits to 1e-10."""

from __future__ import annotations

import copy

import pytest
import torch
from _shared import every_group_permuted, permuted_copy

from landscape.alignment import align, permutation_spec
from landscape.alignment.gpt2 import gpt2_probes
from landscape.alignment.llama import llama_probes
from landscape.alignment.probes import Probe, per_unit, record
from landscape.alignment.repeated import Repeated

pytestmark = pytest.mark.usefixtures("one_thread_per_module")

transformers = pytest.importorskip("transformers")


def _randomized(model: torch.nn.Module, norms: str) -> torch.nn.Module:
    """``model`` in float64 with its biases and norm weights drawn at random (at their
    defaults, permuting them would prove nothing)."""
    model = model.double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or norms in name:
                p.copy_(torch.randn_like(p) * 0.3 + (1.0 if name.endswith("weight") else 0.0))
    return model


def _gpt2(kind: str = "tied") -> torch.nn.Module:
    """A tiny GPT-2: 2 blocks, 2 heads of 8, width 16, MLP of 64, weights of std 0.3."""
    config = transformers.GPT2Config(
        vocab_size=30, n_positions=8, n_embd=16, n_layer=2, n_head=2, bos_token_id=0,
        eos_token_id=0, initializer_range=0.3, attn_implementation="eager",
        tie_word_embeddings=kind != "untied",
    )  # fmt: skip
    torch.manual_seed(0)
    cls = transformers.GPT2Model if kind == "body" else transformers.GPT2LMHeadModel
    return _randomized(cls(config), "ln_")


def _llama(kind: str = "tied", kv_heads: int = 2) -> torch.nn.Module:
    """A tiny Llama: 2 layers, hidden 16, 4 query heads of 4 over ``kv_heads`` key/value
    heads, MLP of 24, biases, weights of std 0.3."""
    config = transformers.LlamaConfig(
        vocab_size=20, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=16,
        initializer_range=0.3, attention_bias=True, mlp_bias=True, attn_implementation="eager",
        tie_word_embeddings=kind == "tied",
    )  # fmt: skip
    torch.manual_seed(0)
    cls = transformers.LlamaModel if kind == "body" else transformers.LlamaForCausalLM
    return _randomized(cls(config), "norm")


def _batches(vocab: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(5)
    return [(ids, ids) for ids in torch.randint(0, vocab, (2, 8, 8), generator=g)]


def _out(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(ids)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def _permuted(model: torch.nn.Module, residual: bool) -> torch.nn.Module:
    """A copy with every group randomly permuted (never the identity), heads reversed as
    wholes with their dimensions shuffled within: the same function."""
    spec = permutation_spec(model, residual=residual)
    return permuted_copy(model, every_group_permuted(spec, seed=1), spec)


def _check_recovered(model: torch.nn.Module, residual: bool, vocab: int) -> None:
    moved = _permuted(model, residual)
    before = copy.deepcopy(moved.state_dict())
    ids = _batches(vocab)[0][0]
    assert (_out(moved, ids) - _out(model, ids)).abs().max() < 1e-10  # the same function
    found = align(model, moved, method="activations", data=_batches(vocab), residual=residual)
    assert found.method == "activations"
    assert found.permutations.keys() == permutation_spec(model, residual=residual).sizes.keys()
    for name, value in model.state_dict().items():  # the original, every tensor
        assert torch.allclose(found.state[name], value, atol=1e-12, rtol=0), name
    assert (_out(found.model, ids) - _out(model, ids)).abs().max() < 1e-10
    assert found.objective_after == pytest.approx(1.0, abs=1e-9)  # every pair correlates 1
    assert found.objective_before < 0.5
    assert all(torch.equal(v, before[k]) for k, v in moved.state_dict().items())  # unchanged


@pytest.mark.parametrize(("kind", "residual"), [("tied", True), ("untied", False), ("body", False)])
def test_activation_matching_recovers_a_permuted_gpt2(kind, residual):
    _check_recovered(_gpt2(kind), residual, 30)


@pytest.mark.usefixtures("float64_norms")
@pytest.mark.parametrize(
    ("kind", "kv_heads", "residual"),
    [("tied", 2, True), ("untied", 4, True), ("untied", 2, False), ("body", 1, False)],
)
def test_activation_matching_recovers_a_permuted_llama(kind, kv_heads, residual):
    _check_recovered(_llama(kind, kv_heads), residual, 20)


def test_activation_matching_of_llama_with_float32_norms_still_recovers_the_permutation():
    model = _llama("untied")  # LlamaRMSNorm as shipped: its float32 mean square reordered
    moved = _permuted(model, True)
    found = align(model, moved, method="activations", data=_batches(20), residual=True)
    for name, value in model.state_dict().items():
        assert torch.allclose(found.state[name], value, atol=1e-12, rtol=0), name


def test_the_probes_cover_every_group_of_the_specs():
    for model in (_gpt2(), _llama()):
        for residual in (False, True):
            spec = permutation_spec(model, residual=residual)
            probes = gpt2_probes(model, residual=residual) or llama_probes(model, residual=residual)
            assert {p.group for p in probes} == set(spec.sizes)
    assert gpt2_probes(_llama()) is None and llama_probes(_gpt2()) is None


def test_probes_read_segments_copies_and_whole_heads():
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    x = torch.randn(5, 3, dtype=torch.float32)
    hidden = torch.tanh(net[0](x)).double()
    probes = [
        Probe("2", "h"),
        Probe("0", "h", output=True, segment=(2, 6)),
        Probe("2", "h", repeated=Repeated("h", 2, 2)),
    ]
    whole, part, copies = record(net, probes, x)
    assert torch.equal(whole, hidden) and torch.equal(part, net[0](x).double()[:, 2:6])
    # (head, copy, dim) of 2 heads, 2 copies, 2 dims: each copy a sample of 4 units
    expected = hidden.reshape(5, 2, 2, 2).transpose(1, 2).reshape(10, 4)
    assert torch.equal(copies, expected)
    assert not net[2]._forward_pre_hooks and not net[0]._forward_hooks  # hooks removed
    corr = torch.arange(16.0).reshape(4, 4)
    assert per_unit(corr, 2).tolist() == [[(0 + 5) / 2, (2 + 7) / 2], [(8 + 13) / 2, (10 + 15) / 2]]


@pytest.mark.usefixtures("float64_norms")
def test_activation_matching_of_two_independent_models_keeps_b_s_function():
    for build, vocab in ((_gpt2, 30), (_llama, 20)):
        a = build()
        torch.manual_seed(7)
        b = _randomized(type(a)(a.config), "ln_" if vocab == 30 else "norm")
        ids = _batches(vocab)[0][0]
        found = align(a, b, method="activations", data=_batches(vocab), residual=True)
        assert (_out(found.model, ids) - _out(b, ids)).abs().max() < 1e-10
        assert found.objective_after > found.objective_before


def test_activation_correlations_leave_the_models_as_they_were():
    from landscape.alignment import activation_correlations

    a, b = _gpt2(), _permuted(_gpt2(), False)
    a.train()
    states = [copy.deepcopy(m.state_dict()) for m in (a, b)]
    corr = activation_correlations(permutation_spec(a), a, b, _batches(30))
    assert a.training and all(m.training for m in a.modules()) and not b.training
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in (*a.modules(), *b.modules()))
    for model, state in zip((a, b), states, strict=True):
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert set(corr) == set(permutation_spec(a).sizes)
