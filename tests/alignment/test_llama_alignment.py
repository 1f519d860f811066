"""Alignment of Hugging Face Llama (which torch.fx cannot trace): the hand-written spec of
MLP units, key/value heads with their query heads (grouped-query attention) and value
dimensions is a symmetry, weight matching recovers it exactly, and the permutations it
leaves out (rotary pairs moved, heads moved across groups) are not symmetries."""

from __future__ import annotations

import copy

import pytest
import torch

import landscape as ls
from landscape.alignment import align, permutation_spec, permute_state
from landscape.paths import connect_checkpoints

pytestmark = pytest.mark.usefixtures("one_thread_per_module")

transformers = pytest.importorskip("transformers")


def _llama(seed: int, head: bool = True, kv_heads: int = 2, bias: bool = False):
    """A tiny float64 Llama: 2 layers, hidden 16, 4 query heads of 4 dims (2 rotary pairs)
    over ``kv_heads`` key/value heads, MLP of 24, weights of std 0.3."""
    config = transformers.LlamaConfig(
        vocab_size=20, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=16,
        initializer_range=0.3, attention_bias=bias, mlp_bias=bias, attn_implementation="eager",
    )  # fmt: skip
    torch.manual_seed(seed)
    cls = transformers.LlamaForCausalLM if head else transformers.LlamaModel
    return cls(config).double().eval()


def _ids(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 20, (3, 8), generator=torch.Generator().manual_seed(seed))


def _out(model, ids=None):
    with torch.no_grad():
        out = model(_ids() if ids is None else ids)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def _random_perms(spec, seed):
    """Random permutations: MLP units freely, key/value heads as wholes (never the
    identity) and the value dimensions within each."""
    g = torch.Generator().manual_seed(seed)
    perms = {k: torch.randperm(n, generator=g) for k, n in spec.sizes.items()}
    for num, groups in spec.heads.values():
        order = torch.randperm(num, generator=g)
        while num > 1 and torch.equal(order, torch.arange(num)):
            order = torch.randperm(num, generator=g)
        for group in groups:
            d = spec.sizes[group] // num
            perms[group] = torch.cat(
                [order[h] * d + torch.randperm(d, generator=g) for h in range(num)]
            )
    return perms


def _moved(model, perms, spec=None):
    out = copy.deepcopy(model)
    spec = permutation_spec(model) if spec is None else spec
    out.load_state_dict(permute_state(model.state_dict(), spec, perms))
    return out


def test_llama_spec_lists_mlp_units_kv_heads_and_value_dims_and_leaves_the_residual_stream():
    spec = permutation_spec(_llama(0))
    attn, mlp = "model.layers.0.self_attn", "model.layers.0.mlp"
    qk, v = f"{attn}.qk", f"{attn}.v"
    assert spec.sizes == {
        f"model.layers.{i}.{g}": n
        for i in (0, 1)
        for g, n in (("mlp", 24), ("self_attn.qk", 2), ("self_attn.v", 8))
    }
    assert spec.heads[attn] == (2, (qk, v))
    assert spec.axes[f"{attn}.q_proj.weight"] == spec.axes[f"{attn}.k_proj.weight"] == (qk, None)
    assert spec.axes[f"{attn}.o_proj.weight"][1].group == v
    assert spec.axes[f"{mlp}.gate_proj.weight"] == spec.axes[f"{mlp}.up_proj.weight"] == (mlp, None)
    assert spec.axes[f"{mlp}.down_proj.weight"] == (None, mlp)
    for name in ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"):
        assert name not in spec.axes  # the residual stream stays put
    assert "model.layers.0.input_layernorm.weight" not in spec.axes
    assert permutation_spec(_llama(0, head=False)).sizes.keys() == {
        k.removeprefix("model.") for k in spec.sizes
    }


@pytest.mark.parametrize(
    ("head", "kv_heads", "bias"),
    [(True, 2, False), (False, 2, True), (True, 4, True), (True, 1, False)],
)
def test_a_permutation_of_units_heads_and_value_dims_preserves_llama(head, kv_heads, bias):
    model = _llama(0, head, kv_heads, bias)
    moved = _moved(model, _random_perms(permutation_spec(model), seed=1))
    layer = f"{'model.' if head else ''}layers.1.self_attn"
    moves = ("v_proj", "o_proj") + (("q_proj", "k_proj") if kv_heads > 1 else ())
    for proj in moves:  # one key/value head: only the value dimensions can move
        name = f"{layer}.{proj}.weight"
        assert not torch.equal(moved.state_dict()[name], model.state_dict()[name]), name
    assert (_out(moved) - _out(model)).abs().max() < 1e-10


def test_weight_matching_recovers_a_permuted_llama_exactly_and_leaves_b_unchanged():
    a = _llama(0, bias=True)
    moved = _moved(a, _random_perms(permutation_spec(a), seed=2))
    before = copy.deepcopy(moved.state_dict())
    result = align(a, moved)
    for name, value in a.state_dict().items():
        assert (result.state[name] - value).abs().max() < 1e-12, name
    assert (_out(result.model) - _out(a)).abs().max() < 1e-10
    assert all(torch.equal(v, before[k]) for k, v in moved.state_dict().items())


def test_aligning_a_permuted_llama_removes_the_barrier_to_it():
    a = _llama(0)
    moved = _moved(a, _random_perms(permutation_spec(a), seed=3))
    ids = _ids(1)
    labels = ids.clone()
    labels[:, 1:] = _out(a, ids)[:, :-1].argmax(-1)  # a's own next-token predictions
    objective = ls.Objective(a, [(ids, labels)], loss="causal_lm")
    connection = connect_checkpoints(objective, a, moved, curve="line", t=5, align="weights")
    before, after = connection.unaligned.barrier, connection.line.barrier
    print(f"Llama and its permuted copy: barrier {before:.3g} -> aligned {after:.3g}")
    assert before > 0.1
    assert abs(after) < 1e-8


def _rows(model, perm_of_rows):
    """``model`` with rows of layer 0's ``q_proj`` and ``k_proj`` reordered by hand."""
    out = copy.deepcopy(model)
    attn = out.model.layers[0].self_attn
    with torch.no_grad():
        for proj, perm in perm_of_rows.items():
            w = getattr(attn, proj).weight
            w.copy_(w[perm])
    return out


def test_permutations_that_move_rotary_pairs_or_cross_groups_change_llama():
    model = _llama(0)
    d = 4  # head_dim: pairs (0, 2) and (1, 3)
    base = _out(model)

    def within_head(p):  # one permutation of each head's dims, same for q and k
        p = torch.tensor(p)
        return {
            "q_proj": torch.cat([h * d + p for h in range(4)]),
            "k_proj": torch.cat([h * d + p for h in range(2)]),
        }

    pairs_as_units = within_head([1, 0, 3, 2])  # the two pairs trade frequencies
    pairs_split = within_head([2, 1, 0, 3])  # dim 0 and dim 2 swap halves
    changed = {
        "rotary pairs moved as units": _rows(model, pairs_as_units),
        "a rotary pair split": _rows(model, pairs_split),
        # query head 1 (reads key/value head 0) traded with query head 2 (reads head 1)
        "query heads across groups": _rows(
            model,
            {
                "q_proj": torch.cat(
                    [
                        torch.arange(0, 4),
                        torch.arange(8, 12),
                        torch.arange(4, 8),
                        torch.arange(12, 16),
                    ]
                )
            },
        ),  # fmt: skip
        # key/value head 0 moved without its query heads
        "key heads without their query heads": _rows(
            model, {"k_proj": torch.cat([torch.arange(4, 8), torch.arange(0, 4)])}
        ),
    }
    for what, other in changed.items():
        gap = float((_out(other) - base).abs().max())
        print(f"Llama, {what}: logits move by {gap:.3g}")
        assert gap > 1e-3, what
    heads_together = _rows(
        model,
        {
            "q_proj": torch.cat([torch.arange(8, 16), torch.arange(0, 8)]),
            "k_proj": torch.cat([torch.arange(4, 8), torch.arange(0, 4)]),
        },
    )  # the whole group moved (the value heads stay: only the scores are compared)
    assert (_out(heads_together) - base).abs().max() > 1e-3  # v and o did not follow
    spec = permutation_spec(model)
    swap = {"qk": torch.tensor([1, 0]), "v": torch.cat([torch.arange(4, 8), torch.arange(4)])}
    whole = _moved(model, {f"model.layers.0.self_attn.{g}": p for g, p in swap.items()}, spec)
    assert (_out(whole) - base).abs().max() < 1e-10  # q, k, v and o all follow


def test_two_independent_llamas_align_and_keep_b_s_function():
    a, b = _llama(0), _llama(1)
    before = copy.deepcopy(b.state_dict())
    result = align(a, b)
    assert (_out(result.model) - _out(b)).abs().max() < 1e-10
    assert result.objective_after > result.objective_before
    assert any(not torch.equal(p, torch.arange(len(p))) for p in result.permutations.values())
    assert all(torch.equal(v, before[k]) for k, v in b.state_dict().items())  # b unchanged


def test_a_llama_layer_with_an_unknown_parameter_is_refused_naming_it():
    model = _llama(0)
    model.model.layers[1].self_attn.q_norm = torch.nn.LayerNorm(4).double()
    with pytest.raises(ValueError, match=r"model\.layers\.1\.self_attn\.q_norm\.weight"):
        align(model, _llama(1))
