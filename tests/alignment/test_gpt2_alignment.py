"""Alignment of Hugging Face GPT-2 (which torch.fx cannot trace): the hand-written spec of
MLP units and whole heads is a symmetry, weight matching recovers it, and the barrier
between a model and its permuted copy vanishes after alignment."""

from __future__ import annotations

import copy

import pytest
import torch

import landscape as ls
from landscape.alignment import align, permutation_spec, permute_state
from landscape.paths import connect_checkpoints

pytestmark = pytest.mark.usefixtures("one_thread_per_module")

transformers = pytest.importorskip("transformers")


def _gpt2(seed: int, head: bool = True) -> torch.nn.Module:
    """A tiny float64 GPT-2 (2 blocks, 2 heads of 8, MLP of 64) with weights large enough
    (std 0.3) that a permutation's midpoint visibly changes the loss."""
    config = transformers.GPT2Config(
        vocab_size=30, n_positions=8, n_embd=16, n_layer=2, n_head=2, bos_token_id=0,
        eos_token_id=0, initializer_range=0.3, attn_implementation="eager",
    )  # fmt: skip
    torch.manual_seed(seed)
    cls = transformers.GPT2LMHeadModel if head else transformers.GPT2Model
    return cls(config).double().eval()


def _ids(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 30, (4, 8), generator=torch.Generator().manual_seed(seed))


def _out(model, ids):
    with torch.no_grad():
        out = model(ids)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def _random_perms(spec, seed):
    """Random permutations: MLP units freely, attention by whole heads and within each."""
    g = torch.Generator().manual_seed(seed)
    perms = {k: torch.randperm(n, generator=g) for k, n in spec.sizes.items()}
    for num, groups in spec.heads.values():
        order = torch.randperm(num, generator=g)
        while torch.equal(order, torch.arange(num)):  # make sure the heads move
            order = torch.randperm(num, generator=g)
        for group in groups:
            d = spec.sizes[group] // num
            perms[group] = torch.cat(
                [order[h] * d + torch.randperm(d, generator=g) for h in range(num)]
            )
    return perms


def _permuted(model, seed=1):
    spec = permutation_spec(model)
    moved = copy.deepcopy(model)
    moved.load_state_dict(permute_state(model.state_dict(), spec, _random_perms(spec, seed)))
    return moved


def test_gpt2_spec_lists_mlp_units_and_heads_and_leaves_the_residual_stream():
    spec = permutation_spec(_gpt2(0))
    block = "transformer.h.0"
    assert spec.sizes[f"{block}.mlp.c_fc"] == 64
    assert spec.heads[f"{block}.attn"] == (2, (f"{block}.attn.qk", f"{block}.attn.v"))
    qkv = (f"{block}.attn.qk", f"{block}.attn.qk", f"{block}.attn.v")
    assert spec.axes[f"{block}.attn.c_attn.weight"] == (None, qkv)
    assert spec.axes[f"{block}.attn.c_proj.weight"] == (f"{block}.attn.v", None)
    assert spec.axes[f"{block}.mlp.c_proj.weight"] == (f"{block}.mlp.c_fc", None)
    for name in ("transformer.wte.weight", "lm_head.weight", f"{block}.ln_1.weight"):
        assert name not in spec.axes  # the residual stream stays put
    assert len(spec.sizes) == 6
    assert permutation_spec(_gpt2(0, head=False)).sizes.keys() == {
        k.removeprefix("transformer.") for k in spec.sizes
    }


@pytest.mark.parametrize("head", [True, False])
def test_a_permutation_of_units_and_heads_preserves_gpt2(head):
    model = _gpt2(0, head)
    moved = _permuted(model)
    ids = _ids()
    name = "transformer.h.1.attn.c_attn.weight" if head else "h.1.attn.c_attn.weight"
    assert not torch.equal(moved.state_dict()[name], model.state_dict()[name])
    assert (_out(moved, ids) - _out(model, ids)).abs().max() < 1e-10


def test_a_permutation_across_head_boundaries_is_not_a_symmetry():
    model = _gpt2(0)
    spec = permutation_spec(model)
    perms = {
        "transformer.h.0.attn.qk": torch.tensor([8] + list(range(1, 8)) + [0] + list(range(9, 16)))
    }
    moved = copy.deepcopy(model)
    moved.load_state_dict(permute_state(model.state_dict(), spec, perms))
    ids = _ids()
    assert (_out(moved, ids) - _out(model, ids)).abs().max() > 1e-3


def test_weight_matching_recovers_a_permuted_gpt2_and_removes_the_barrier():
    a = _gpt2(0)
    moved = _permuted(a, seed=2)
    result = align(a, moved)
    for name, value in a.state_dict().items():
        assert (result.state[name] - value).abs().max() < 1e-10, name
    batches = []
    for ids in (_ids(1), _ids(2)):  # labels: a's own next-token predictions (a fits them)
        labels = ids.clone()
        labels[:, 1:] = _out(a, ids)[:, :-1].argmax(-1)
        batches.append((ids, labels))
    objective = ls.Objective(a, batches, loss="causal_lm")
    connection = connect_checkpoints(objective, a, moved, curve="line", t=5, align="weights")
    before, after = connection.unaligned.barrier, connection.line.barrier
    print(f"GPT-2 and its permuted copy: barrier {before:.3g} -> aligned {after:.3g}")
    assert before > 1e-4
    assert abs(after) < 1e-8


def test_two_independent_gpt2s_align_and_keep_b_s_function():
    a, b = _gpt2(0), _gpt2(1)
    before = copy.deepcopy(b.state_dict())
    result = align(a, b)
    ids = _ids()
    assert (_out(result.model, ids) - _out(b, ids)).abs().max() < 1e-10
    assert result.objective_after >= result.objective_before
    assert any(not torch.equal(p, torch.arange(len(p))) for p in result.permutations.values())
    assert all(torch.equal(v, before[k]) for k, v in b.state_dict().items())  # b unchanged
