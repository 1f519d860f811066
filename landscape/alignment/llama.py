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
Llama's are distinct); the query heads of one group keep their order within it. A layer
with any other parameter is refused, naming it.

With ``residual=True`` (opt-in), the residual stream (the hidden dimensions) is one more
group, ``"residual"``, shared by every layer: the columns of ``embed_tokens``, every
RMSNorm's weight (``input_layernorm``, ``post_attention_layernorm``, the final ``norm``: the
root mean square does not depend on the order of the features), the input columns of
``q_proj``, ``k_proj``, ``v_proj``, ``gate_proj`` and ``up_proj``, the output rows (and
biases) of ``o_proj`` and ``down_proj``, and the columns of ``lm_head`` (tied or not).
RoPE acts on the projected queries and keys, not on the residual stream.
By default it stays in place, as before the option was added; a ``LlamaModel`` keeps it
in place always, since its output is the residual stream itself (a model's outputs are
never permuted). Hugging Face's ``LlamaRMSNorm`` takes the mean square in float32 whatever
the model's dtype, so a permuted float64 Llama agrees with the original to a few 1e-6,
not to float64 rounding (the order of that float32 sum changes). For activation
matching, :func:`llama_probes` says where each group's units show in the activations
(recorded by forward hooks).

Example:
    >>> from transformers import LlamaConfig, LlamaForCausalLM, LlamaModel
    >>> config = LlamaConfig(vocab_size=10, hidden_size=8, intermediate_size=12,
    ...     num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2)
    >>> sizes, axes, heads = llama_axes(LlamaModel(config))
    >>> sizes
    {'layers.0.mlp': 12, 'layers.0.self_attn.qk': 2, 'layers.0.self_attn.v': 4}
    >>> axes["layers.0.self_attn.o_proj.weight"]
    (None, Repeated(group='layers.0.self_attn.v', heads=2, repeat=2))
    >>> heads["layers.0.self_attn"]
    (2, ('layers.0.self_attn.qk', 'layers.0.self_attn.v'))
    >>> sizes, axes, heads = llama_axes(LlamaForCausalLM(config), residual=True)
    >>> sizes["residual"], axes["model.norm.weight"], axes["lm_head.weight"]
    (8, ('residual',), (None, 'residual'))
    >>> axes["model.layers.0.self_attn.o_proj.weight"][0]
    'residual'
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .probes import Probe
from .repeated import Repeated
from .residual import RESIDUAL, HandWritten, complete

__all__ = ["llama_axes", "llama_probes"]

_CLASSES = ("LlamaModel", "LlamaForCausalLM")
_KNOWN = {
    f"{module}.{p}"
    for module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
    + ("self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
    for p in ("weight", "bias")
} | {"input_layernorm.weight", "post_attention_layernorm.weight"}


def llama_axes(model: nn.Module, *, residual: bool = False) -> HandWritten:
    """``(sizes, axes, heads)`` of a Hugging Face ``LlamaModel`` or ``LlamaForCausalLM``, in
    the form of :class:`~landscape.alignment.PermutationSpec`; ``None`` for any other model.

    Args:
        model: the network (not changed).
        residual: permute the residual stream (group ``"residual"``) too (a
            ``LlamaForCausalLM`` only).

    Raises:
        ValueError: a decoder layer with a parameter other than the seven projections (and
            their biases) and the two RMSNorm weights, or with ``residual=True`` a parameter
            outside the layers other than ``embed_tokens``, ``norm`` and ``lm_head`` (the
            message names it).
    """
    kind = type(model).__name__
    if kind not in _CLASSES:
        return None
    body, prefix = (model, "") if kind == "LlamaModel" else (model.model, "model.")
    residual = residual and bool(prefix)  # a LlamaModel outputs the residual stream
    r = RESIDUAL if residual else None
    width = int(body.embed_tokens.embedding_dim)  # type: ignore[union-attr, arg-type]
    sizes: dict[str, int] = {RESIDUAL: width} if residual else {}
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
            axes[f"{mlp}.{proj}.weight"] = (mlp, r)
            axes[f"{mlp}.{proj}.bias"] = (mlp,)
        axes[f"{mlp}.down_proj.weight"] = (r, mlp)
        qk, v = f"{attn}.qk", f"{attn}.v"
        num_kv = int(layer.self_attn.config.num_key_value_heads)
        repeat = int(layer.self_attn.num_key_value_groups)
        sizes[qk], sizes[v] = num_kv, int(layer.self_attn.v_proj.out_features)
        for proj, group in (("q_proj", qk), ("k_proj", qk), ("v_proj", v)):
            axes[f"{attn}.{proj}.weight"] = (group, r)
            axes[f"{attn}.{proj}.bias"] = (group,)
        axes[f"{attn}.o_proj.weight"] = (r, Repeated(v, num_kv, repeat) if repeat > 1 else v)
        heads[attn] = (num_kv, (qk, v))
        if residual:
            for p in ("input_layernorm.weight", "post_attention_layernorm.weight"):
                axes[f"{name}.{p}"] = (r,)
            axes[f"{attn}.o_proj.bias"] = axes[f"{mlp}.down_proj.bias"] = (r,)
    if residual:
        axes[f"{prefix}embed_tokens.weight"] = (None, r)
        axes[f"{prefix}norm.weight"] = (r,)
        axes["lm_head.weight"] = (None, r)  # tied to embed_tokens or not: its columns
    names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    if residual:
        complete(kind, axes, names)
    return sizes, {k: a for k, a in axes.items() if k in names}, heads


def llama_probes(model: nn.Module, *, residual: bool = False) -> list[Probe] | None:
    """Where the groups of :func:`llama_axes` show in the activations (for activation
    matching, :mod:`~.probes`); ``None`` for any other model.

    The MLP units at the input of ``mlp.down_proj``; the key/value heads (group ``qk``) in
    the outputs of ``q_proj`` and ``k_proj``, each head a unit of its query heads' (or its
    own) dimensions, matched dimension by dimension (rotary embeddings keep them in place);
    the value dimensions at the input of ``o_proj``, each query head reading a key/value
    head one more sample of its units; with ``residual=True`` (a ``LlamaForCausalLM``),
    the residual stream at the output of ``embed_tokens`` and of every layer.

    Example:
        >>> from transformers import LlamaConfig, LlamaModel
        >>> config = LlamaConfig(vocab_size=10, hidden_size=8, intermediate_size=12,
        ...     num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2)
        >>> [(p.module, p.width) for p in llama_probes(LlamaModel(config))][1:3]
        [('layers.0.self_attn.q_proj', 4), ('layers.0.self_attn.k_proj', 2)]
    """
    kind = type(model).__name__
    if kind not in _CLASSES:
        return None
    body, prefix = (model, "") if kind == "LlamaModel" else (model.model, "model.")
    residual = residual and bool(prefix)
    probes = [Probe(f"{prefix}embed_tokens", RESIDUAL, output=True)] if residual else []
    for i, layer in enumerate(body.layers):  # type: ignore[union-attr, arg-type]
        name = f"{prefix}layers.{i}"
        mlp, attn = f"{name}.mlp", f"{name}.self_attn"
        num_kv = int(layer.self_attn.config.num_key_value_heads)
        repeat = int(layer.self_attn.num_key_value_groups)
        v = f"{attn}.v"
        probes += [
            Probe(f"{mlp}.down_proj", mlp),
            Probe(
                f"{attn}.q_proj",
                f"{attn}.qk",
                True,
                width=layer.self_attn.q_proj.out_features // num_kv,
            ),
            Probe(
                f"{attn}.k_proj",
                f"{attn}.qk",
                True,
                width=layer.self_attn.k_proj.out_features // num_kv,
            ),
            Probe(
                f"{attn}.o_proj", v, repeated=Repeated(v, num_kv, repeat) if repeat > 1 else None
            ),
        ]
        if residual:
            probes.append(Probe(name, RESIDUAL, output=True))
    return probes
