"""The residual stream of Hugging Face Llama as one permutation group shared by every
layer (``residual=True``, opt-in): a random permutation of it (with the MLP units,
key/value heads and value dimensions) keeps the logits, the spec lists every tensor that
reads or writes it (skipping any one changes the outputs), and weight matching recovers a
permuted copy exactly.

``LlamaRMSNorm`` takes its mean square in float32 whatever the model's dtype, so a
residual permutation (which reorders that float32 sum) keeps a float64 Llama's logits to
a few 1e-6 only (tried: 3.4e-6 and 4.3e-6); with the norm computed in the input dtype
(``float64_norms``) they agree to 1e-10, which shows the symmetry is exact."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from _shared import every_group_permuted, permuted_copy

from landscape.alignment import align, permutation_spec

pytestmark = pytest.mark.usefixtures("one_thread_per_module")

transformers = pytest.importorskip("transformers")


def _llama(seed: int, kind: str = "tied", kv_heads: int = 2, bias: bool = True):
    """A tiny float64 Llama: 2 layers, hidden 16, 4 query heads of 4 dims over
    ``kv_heads`` key/value heads, MLP of 24, weights of std 0.3, RMSNorm weights and biases
    drawn at random (at their defaults, permuting them would prove nothing). ``kind``:
    ``"tied"``/``"untied"`` (``LlamaForCausalLM``) or ``"body"`` (``LlamaModel``)."""
    config = transformers.LlamaConfig(
        vocab_size=20, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=16,
        initializer_range=0.3, attention_bias=bias, mlp_bias=bias, attn_implementation="eager",
        tie_word_embeddings=kind == "tied",
    )  # fmt: skip
    torch.manual_seed(seed)
    cls = transformers.LlamaModel if kind == "body" else transformers.LlamaForCausalLM
    model = cls(config).double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.copy_(torch.randn_like(p) * 0.3 + (1.0 if name.endswith("weight") else 0.0))
    return model


def _ids(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 20, (3, 8), generator=torch.Generator().manual_seed(seed))


def _out(model):
    with torch.no_grad():
        out = model(_ids())
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def test_the_residual_group_reaches_every_parameter_of_llama():
    model = _llama(0, "untied")
    spec = permutation_spec(model, residual=True)
    r, attn, mlp = "residual", "model.layers.1.self_attn", "model.layers.1.mlp"
    assert spec.sizes[r] == 16 and spec.first == (r,)
    assert set(spec.axes) == {n for n, _ in model.named_parameters()}
    assert spec.axes["model.embed_tokens.weight"] == spec.axes["lm_head.weight"] == (None, r)
    for name in ("layers.0.input_layernorm", "layers.1.post_attention_layernorm", "norm"):
        assert spec.axes[f"model.{name}.weight"] == (r,)
    for proj, group in (("q_proj", "qk"), ("k_proj", "qk"), ("v_proj", "v")):
        assert spec.axes[f"{attn}.{proj}.weight"] == (f"{attn}.{group}", r)
    assert spec.axes[f"{attn}.o_proj.weight"][0] == r
    assert spec.axes[f"{attn}.o_proj.bias"] == spec.axes[f"{mlp}.down_proj.bias"] == (r,)
    assert spec.axes[f"{mlp}.up_proj.weight"] == spec.axes[f"{mlp}.gate_proj.weight"] == (mlp, r)
    assert spec.axes[f"{mlp}.down_proj.weight"] == (r, mlp)
    old = permutation_spec(model)  # the default: the spec of before
    assert old.sizes.keys() == spec.sizes.keys() - {r} and old.axes_of(r) == []
    assert "model.norm.weight" not in old.axes


@pytest.mark.usefixtures("float64_norms")
@pytest.mark.parametrize(
    ("kind", "kv_heads"), [("tied", 2), ("untied", 2), ("untied", 4), ("tied", 1), ("body", 2)]
)
def test_a_permutation_of_every_group_with_the_residual_stream_preserves_llama(kind, kv_heads):
    model = _llama(0, kind, kv_heads)
    spec = permutation_spec(model, residual=True)
    moved = permuted_copy(model, every_group_permuted(spec, seed=1), spec)
    emb = "embed_tokens.weight" if kind == "body" else "model.embed_tokens.weight"
    # a LlamaModel outputs the residual stream itself: it stays put
    assert torch.equal(moved.state_dict()[emb], model.state_dict()[emb]) == (kind == "body")
    if kind != "body":
        head = moved.state_dict()["lm_head.weight"]
        assert not torch.equal(head, model.state_dict()["lm_head.weight"])
        assert torch.equal(head, moved.state_dict()[emb]) == (kind == "tied")
    assert (_out(moved) - _out(model)).abs().max() < 1e-10


def test_hugging_face_rms_norm_keeps_a_permuted_llama_to_float32_rounding():
    model = _llama(0, "untied")
    spec = permutation_spec(model, residual=True)
    moved = permuted_copy(model, every_group_permuted(spec, seed=1), spec)
    assert (_out(moved) - _out(model)).abs().max() < 1e-5


@pytest.mark.usefixtures("float64_norms")
@pytest.mark.parametrize(
    "skipped",
    [
        "model.embed_tokens.weight",
        "model.layers.0.input_layernorm.weight",
        "model.layers.1.post_attention_layernorm.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.self_attn.k_proj.weight",
        "model.layers.0.self_attn.v_proj.weight",
        "model.layers.1.self_attn.o_proj.weight",
        "model.layers.0.self_attn.o_proj.bias",
        "model.layers.1.mlp.gate_proj.weight",
        "model.layers.0.mlp.up_proj.weight",
        "model.layers.1.mlp.down_proj.weight",
        "model.layers.0.mlp.down_proj.bias",
        "model.norm.weight",
        "lm_head.weight",
    ],
)
def test_a_residual_permutation_that_skips_one_tensor_changes_llama(skipped):
    model = _llama(0, "untied")
    spec = permutation_spec(model, residual=True)
    perm = {"residual": every_group_permuted(spec, seed=1)["residual"]}
    assert (_out(permuted_copy(model, perm, spec)) - _out(model)).abs().max() < 1e-10
    axes = dict(spec.axes)
    axes[skipped] = tuple(None if g == "residual" else g for g in axes[skipped])
    partial = dataclasses.replace(spec, axes=axes)
    assert (_out(permuted_copy(model, perm, partial)) - _out(model)).abs().max() > 1e-3


@pytest.mark.usefixtures("float64_norms")
@pytest.mark.parametrize(("kind", "bias"), [("tied", True), ("untied", False)])
def test_weight_matching_recovers_a_llama_permuted_in_every_group_exactly(kind, bias):
    a = _llama(0, kind, bias=bias)
    spec = permutation_spec(a, residual=True)
    moved = permuted_copy(a, every_group_permuted(spec, seed=2), spec)
    before = copy.deepcopy(moved.state_dict())
    result = align(a, moved, residual=True)
    for name, value in a.state_dict().items():
        assert (result.state[name] - value).abs().max() < 1e-12, name
    assert (_out(result.model) - _out(a)).abs().max() < 1e-10
    assert all(torch.equal(v, before[k]) for k, v in moved.state_dict().items())
    emb = align(a, moved).state["model.embed_tokens.weight"]  # the default: not undone
    assert (emb - a.model.embed_tokens.weight).abs().max() > 0.1


def test_a_llama_with_an_unknown_parameter_is_refused_only_with_the_residual_stream():
    model = _llama(0)
    model.model.register_parameter("scale", torch.nn.Parameter(torch.ones(16)))
    with pytest.raises(ValueError, match="residual stream of LlamaForCausalLM.*model.scale"):
        permutation_spec(model, residual=True)
    assert "residual" not in permutation_spec(model).sizes
