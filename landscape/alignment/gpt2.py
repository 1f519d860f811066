"""The permutation symmetry of Hugging Face GPT-2, written by hand (``torch.fx`` cannot
trace ``GPT2Model`` and ``GPT2LMHeadModel`` of recent ``transformers``).

Each block has two kinds of hidden units that can be reordered without changing the
function; ``Conv1D`` stores its weight as ``(in, out)``:

- the MLP's units: the columns of ``mlp.c_fc.weight`` and its bias, the rows of
  ``mlp.c_proj.weight`` (group ``"<block>.mlp.c_fc"``);
- the attention's heads, as for ``nn.MultiheadAttention``: the query, key and value column
  blocks of ``attn.c_attn`` (and its bias) are permuted by whole heads, one head order for
  all three, and within each head the query/key dimensions by one permutation (group
  ``"<block>.attn.qk"``) and the value dimensions with the rows of ``attn.c_proj.weight``
  by another (group ``"<block>.attn.v"``).

With ``residual=True`` (opt-in), the residual stream (the embedding dimensions) is one more
group, ``"residual"``, shared by every block: the columns of ``wte`` and ``wpe``, every
LayerNorm's weight and bias (``ln_1``, ``ln_2``, ``ln_f``: a LayerNorm's mean and variance
do not depend on the order of its features, so it commutes with the permutation), the
input rows of ``attn.c_attn`` and ``mlp.c_fc``, the output columns and bias of
``attn.c_proj`` and ``mlp.c_proj``, and the columns of ``lm_head`` (tied to ``wte`` or
not). By default it stays in place, as before the option was added; a ``GPT2Model``
keeps it in place always, since its output is the residual stream itself (a model's
outputs are never permuted). Cross-attention
(``add_cross_attention``) is refused, and so is, with ``residual=True``, any parameter
not listed here. For activation matching, :func:`gpt2_probes` says where each group's
units show in the activations (recorded by forward hooks: fx cannot run the model).

Example:
    >>> from transformers import GPT2Config, GPT2LMHeadModel
    >>> net = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10))
    >>> sizes, axes, heads = gpt2_axes(net)
    >>> sizes["transformer.h.0.mlp.c_fc"], sizes["transformer.h.0.attn.v"]
    (32, 8)
    >>> axes["transformer.h.0.attn.c_proj.weight"], heads["transformer.h.0.attn"]
    (('transformer.h.0.attn.v', None), (2, ('transformer.h.0.attn.qk', 'transformer.h.0.attn.v')))
    >>> sizes, axes, heads = gpt2_axes(net, residual=True)
    >>> sizes["residual"], axes["transformer.h.0.attn.c_proj.weight"], axes["lm_head.weight"]
    (8, ('transformer.h.0.attn.v', 'residual'), (None, 'residual'))
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .probes import Probe
from .residual import RESIDUAL, HandWritten, complete

__all__ = ["gpt2_axes", "gpt2_probes"]

_CLASSES = ("GPT2Model", "GPT2LMHeadModel")


def gpt2_axes(model: nn.Module, *, residual: bool = False) -> HandWritten:
    """``(sizes, axes, heads)`` of a Hugging Face ``GPT2Model`` or ``GPT2LMHeadModel``, in
    the form of :class:`~landscape.alignment.PermutationSpec`; ``None`` for any other model.

    Args:
        model: the network (not changed).
        residual: permute the residual stream (group ``"residual"``) too (a
            ``GPT2LMHeadModel`` only).

    Raises:
        ValueError: a GPT-2 with cross-attention (its symmetry is not written here), or
            with ``residual=True`` a parameter not listed above (the message names it).
    """
    if type(model).__name__ not in _CLASSES:
        return None
    body, prefix = (
        (model, "") if type(model).__name__ == "GPT2Model" else (model.transformer, "transformer.")
    )
    residual = residual and bool(prefix)  # a GPT2Model outputs the residual stream
    r = RESIDUAL if residual else None
    width = int(body.wte.weight.shape[1])  # type: ignore[union-attr, index]
    sizes: dict[str, int] = {RESIDUAL: width} if residual else {}
    axes: dict[str, tuple[Any, ...]] = {}
    heads: dict[str, tuple[int, tuple[str, ...]]] = {}
    for i, block in enumerate(body.h):  # type: ignore[union-attr, arg-type]
        name = f"{prefix}h.{i}"
        if hasattr(block, "crossattention"):
            raise ValueError(
                f"cannot derive the permutation symmetry of {type(model).__name__}: expected "
                f"GPT-2 blocks without cross-attention, got {name}.crossattention"
            )
        mlp, attn = f"{name}.mlp", f"{name}.attn"
        units = f"{mlp}.c_fc"
        sizes[units] = int(block.mlp.c_fc.weight.shape[1])
        axes[f"{mlp}.c_fc.weight"] = (r, units)
        axes[f"{mlp}.c_fc.bias"] = (units,)
        axes[f"{mlp}.c_proj.weight"] = (units, r)
        qk, v = f"{attn}.qk", f"{attn}.v"
        width = int(block.attn.c_proj.weight.shape[0])
        sizes[qk] = sizes[v] = width
        axes[f"{attn}.c_attn.weight"] = (r, (qk, qk, v))
        axes[f"{attn}.c_attn.bias"] = ((qk, qk, v),)
        axes[f"{attn}.c_proj.weight"] = (v, r)
        heads[attn] = (int(block.attn.num_heads), (qk, v))
        if residual:
            for p in ("ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias"):
                axes[f"{name}.{p}"] = (r,)
            axes[f"{attn}.c_proj.bias"] = axes[f"{mlp}.c_proj.bias"] = (r,)
    if residual:
        for p in ("wte.weight", "wpe.weight"):
            axes[f"{prefix}{p}"] = (None, r)
        axes[f"{prefix}ln_f.weight"] = axes[f"{prefix}ln_f.bias"] = (r,)
        if prefix:
            axes["lm_head.weight"] = (None, r)  # tied to wte or not: its columns
    names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    if residual:
        complete(type(model).__name__, axes, names)
    return sizes, {k: a for k, a in axes.items() if k in names}, heads


def gpt2_probes(model: nn.Module, *, residual: bool = False) -> list[Probe] | None:
    """Where the groups of :func:`gpt2_axes` show in the activations (for activation
    matching, :mod:`~.probes`); ``None`` for any other model.

    The MLP units at the input of ``mlp.c_proj``; the query/key dimensions in the query
    and the key thirds of ``attn.c_attn``'s output; the value dimensions, heads
    concatenated, at the input of ``attn.c_proj``; with ``residual=True`` (a
    ``GPT2LMHeadModel``), the residual stream at the output of ``drop`` (the embeddings)
    and of every block.

    Example:
        >>> from transformers import GPT2Config, GPT2LMHeadModel
        >>> net = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10))
        >>> [(p.module, p.group, p.segment) for p in gpt2_probes(net)][1]
        ('transformer.h.0.attn.c_attn', 'transformer.h.0.attn.qk', (0, 8))
    """
    if type(model).__name__ not in _CLASSES:
        return None
    body, prefix = (
        (model, "") if type(model).__name__ == "GPT2Model" else (model.transformer, "transformer.")
    )
    residual = residual and bool(prefix)
    probes = [Probe(f"{prefix}drop", RESIDUAL, output=True)] if residual else []
    for i, block in enumerate(body.h):  # type: ignore[union-attr, arg-type]
        name = f"{prefix}h.{i}"
        mlp, attn = f"{name}.mlp", f"{name}.attn"
        width = int(block.attn.c_proj.weight.shape[0])
        probes += [
            Probe(f"{mlp}.c_proj", f"{mlp}.c_fc"),
            Probe(f"{attn}.c_attn", f"{attn}.qk", output=True, segment=(0, width)),
            Probe(f"{attn}.c_attn", f"{attn}.qk", output=True, segment=(width, 2 * width)),
            Probe(f"{attn}.c_proj", f"{attn}.v"),
        ]
        if residual:
            probes.append(Probe(name, RESIDUAL, output=True))
    return probes
