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

The residual stream (the embedding dimensions) is not permuted: every block's LayerNorm,
projections and the tied head read it, so one permutation of it is possible but is left
out here. Cross-attention (``add_cross_attention``) is refused.

Example:
    >>> from transformers import GPT2Config, GPT2Model
    >>> net = GPT2Model(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10))
    >>> sizes, axes, heads = gpt2_axes(net)
    >>> sizes
    {'h.0.mlp.c_fc': 32, 'h.0.attn.qk': 8, 'h.0.attn.v': 8}
    >>> axes["h.0.attn.c_proj.weight"], heads["h.0.attn"]
    (('h.0.attn.v', None), (2, ('h.0.attn.qk', 'h.0.attn.v')))
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["gpt2_axes"]

_CLASSES = ("GPT2Model", "GPT2LMHeadModel")


def gpt2_axes(
    model: nn.Module,
) -> (
    tuple[dict[str, int], dict[str, tuple[Any, ...]], dict[str, tuple[int, tuple[str, ...]]]] | None
):
    """``(sizes, axes, heads)`` of a Hugging Face ``GPT2Model`` or ``GPT2LMHeadModel``, in
    the form of :class:`~landscape.alignment.PermutationSpec`; ``None`` for any other model.

    Raises:
        ValueError: a GPT-2 with cross-attention (its symmetry is not written here).
    """
    if type(model).__name__ not in _CLASSES:
        return None
    body, prefix = (
        (model, "") if type(model).__name__ == "GPT2Model" else (model.transformer, "transformer.")
    )
    sizes: dict[str, int] = {}
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
        axes[f"{mlp}.c_fc.weight"] = (None, units)
        axes[f"{mlp}.c_fc.bias"] = (units,)
        axes[f"{mlp}.c_proj.weight"] = (units, None)
        qk, v = f"{attn}.qk", f"{attn}.v"
        width = int(block.attn.c_proj.weight.shape[0])
        sizes[qk] = sizes[v] = width
        axes[f"{attn}.c_attn.weight"] = (None, (qk, qk, v))
        axes[f"{attn}.c_attn.bias"] = ((qk, qk, v),)
        axes[f"{attn}.c_proj.weight"] = (v, None)
        heads[attn] = (int(block.attn.num_heads), (qk, v))
    return sizes, axes, heads
