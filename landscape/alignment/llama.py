"""The permutation symmetry of Hugging Face Llama, written by hand (``torch.fx`` cannot
trace ``LlamaModel`` and ``LlamaForCausalLM``).

Each decoder layer has hidden units that can be reordered without changing the function:

- the MLP's units: the rows of ``mlp.gate_proj`` and ``mlp.up_proj`` (and their biases) and
  the columns of ``mlp.down_proj``, one permutation (group ``"<layer>.mlp"``);
- the attention's key/value heads, each with the query heads that read it (grouped-query
  attention): moving key/value head ``j`` moves its rows of ``k_proj`` and ``v_proj`` and
  the rows of ``q_proj`` and columns of ``o_proj`` of its query heads (group
  ``"<attn>.qk"``, one unit per key/value head); within each head, the value dimensions
  with the matching columns of ``o_proj`` in every query head of the group (group
  ``"<attn>.v"``, whose ``o_proj`` axis is a :class:`~.repeated.Repeated`).

Left out: the query/key dimensions within a head are not permuted, because rotary
embeddings turn pair ``(i, i + d/2)`` at its own frequency, so moving a pair, even as a
unit, changes the function (only pairs of equal frequency could trade places, and
Llama's are distinct); the query heads of one group keep their order within it. The
residual stream is not permuted (as for GPT-2) and the RMSNorm weights do not move. A
layer with any other parameter is refused, naming it.

Example:
    >>> from transformers import LlamaConfig, LlamaModel
    >>> config = LlamaConfig(vocab_size=10, hidden_size=8, intermediate_size=12,
    ...     num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2)
    >>> sizes, axes, heads = llama_axes(LlamaModel(config))
    >>> sizes
    {'layers.0.mlp': 12, 'layers.0.self_attn.qk': 2, 'layers.0.self_attn.v': 4}
    >>> axes["layers.0.self_attn.o_proj.weight"]
    (None, Repeated(group='layers.0.self_attn.v', heads=2, repeat=2))
    >>> heads["layers.0.self_attn"]
    (2, ('layers.0.self_attn.qk', 'layers.0.self_attn.v'))
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .repeated import Repeated

__all__ = ["llama_axes"]

_CLASSES = ("LlamaModel", "LlamaForCausalLM")
_KNOWN = {
    f"{module}.{p}"
    for module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
    + ("self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
    for p in ("weight", "bias")
} | {"input_layernorm.weight", "post_attention_layernorm.weight"}


def llama_axes(
    model: nn.Module,
) -> (
    tuple[dict[str, int], dict[str, tuple[Any, ...]], dict[str, tuple[int, tuple[str, ...]]]] | None
):
    """``(sizes, axes, heads)`` of a Hugging Face ``LlamaModel`` or ``LlamaForCausalLM``, in
    the form of :class:`~landscape.alignment.PermutationSpec`; ``None`` for any other model.

    Raises:
        ValueError: a decoder layer with a parameter other than the seven projections (and
            their biases) and the two RMSNorm weights (the message names it).
    """
    kind = type(model).__name__
    if kind not in _CLASSES:
        return None
    body, prefix = (model, "") if kind == "LlamaModel" else (model.model, "model.")
    sizes: dict[str, int] = {}
    axes: dict[str, tuple[Any, ...]] = {}
    heads: dict[str, tuple[int, tuple[str, ...]]] = {}
    for i, layer in enumerate(body.layers):  # type: ignore[union-attr, arg-type]
        name = f"{prefix}layers.{i}"
        for p, _ in layer.named_parameters():
            if p not in _KNOWN:
                raise ValueError(
                    f"cannot derive the permutation symmetry of {kind}: expected decoder layers "
                    "of q/k/v/o and gate/up/down projections and two RMSNorms, got the "
                    f"parameter {name}.{p}"
                )
        mlp, attn = f"{name}.mlp", f"{name}.self_attn"
        sizes[mlp] = int(layer.mlp.up_proj.out_features)
        for proj in ("gate_proj", "up_proj"):
            axes[f"{mlp}.{proj}.weight"] = (mlp, None)
            axes[f"{mlp}.{proj}.bias"] = (mlp,)
        axes[f"{mlp}.down_proj.weight"] = (None, mlp)
        qk, v = f"{attn}.qk", f"{attn}.v"
        num_kv = int(layer.self_attn.config.num_key_value_heads)
        repeat = int(layer.self_attn.num_key_value_groups)
        sizes[qk], sizes[v] = num_kv, int(layer.self_attn.v_proj.out_features)
        for proj, group in (("q_proj", qk), ("k_proj", qk), ("v_proj", v)):
            axes[f"{attn}.{proj}.weight"] = (group, None)
            axes[f"{attn}.{proj}.bias"] = (group,)
        axes[f"{attn}.o_proj.weight"] = (None, Repeated(v, num_kv, repeat) if repeat > 1 else v)
        heads[attn] = (num_kv, (qk, v))
    names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    return sizes, {k: a for k, a in axes.items() if k in names}, heads
