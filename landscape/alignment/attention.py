"""Multi-head attention: permuted by whole heads, and within each head the query/key and the
value dimensions separately.

Attention scores ``q_h . k_h`` are unchanged when the query and key dimensions of head ``h``
are permuted alike, and ``softmax(...) v_h`` feeds the output projection's columns of head
``h``, so the value dimensions (with those columns) may be permuted by another permutation;
the heads themselves may be reordered, the same reordering for both. A permutation that
mixes dimensions of different heads changes the function. :func:`match_heads` solves the
assignment with that structure exactly: for every pair of heads, the best pairing of their
dimensions (one linear assignment per group), then the best pairing of the heads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from torch import fx, nn
from torch.nn import functional as F

if TYPE_CHECKING:
    from .spec import _Tracer

__all__ = ["Outputs", "attention_call", "match_heads"]


@dataclass(frozen=True)
class Outputs:
    """The ``(output, weights)`` pair of an attention module: the output's channel space."""

    space: int


def attention_call(tracer: _Tracer, node: fx.Node, m: nn.MultiheadAttention) -> Any:
    """The channel spaces of a ``nn.MultiheadAttention`` call: the query, key and value
    inputs read one space; ``in_proj_weight``'s three segments are the query/key group
    (twice) and the value group; ``out_proj`` reads the value group and opens the output's
    space. Masks must be fixed (inputs or buffers)."""
    if not m._qkv_same_embed_dim or m.bias_k is not None or m.add_zero_attn:
        return tracer.unknown(node, True)
    names = ("query", "key", "value")
    qkv = [node.args[i] if i < len(node.args) else node.kwargs.get(k) for i, k in enumerate(names)]
    infos = [tracer.info.get(x) if isinstance(x, fx.Node) else None for x in qkv]
    given = [i for i in infos if isinstance(i, tuple) and i[1] in ("last", "any")]
    if len(given) != len(infos):
        return tracer.unknown(node, True)
    spaces = tracer.spaces
    space = given[0][0]
    for info in given[1:]:
        space = spaces.union(space, info[0], f"module {node.target!r}")
    for n in tracer.tensors(node):
        info = tracer.info[n]
        if n not in qkv and isinstance(info, tuple) and not spaces.fixed[spaces.find(info[0])]:
            return tracer.unknown(node, True)  # a mask in permutable channels
    name, width = str(node.target), m.embed_dim  # a call_module target: the module's name
    qk, v = spaces.new(f"{name}.qk", width), spaces.new(f"{name}.v", width)
    out = spaces.new(name, width)
    tracer.put(name, "in_proj_weight", [(qk, qk, v), space])
    if m.in_proj_bias is not None:
        tracer.put(name, "in_proj_bias", [(qk, qk, v)])
    tracer.put(name, "out_proj.weight", [out, v])
    if m.out_proj.bias is not None:
        tracer.put(name, "out_proj.bias", [out])
    tracer.heads[name] = (m.num_heads, (qk, v))
    return Outputs(out)


def match_heads(costs: Sequence[np.ndarray], num_heads: int) -> list[np.ndarray]:
    """The best head-structured permutations: ``max sum_g sum_i costs[g][i, perm_g[i]]``
    over permutations that map head ``h`` to one head ``sigma(h)`` (the same for every
    group) and permute the dimensions within it (one permutation per group and head).

    Args:
        costs: one square matrix per group, of ``num_heads * d_g`` units.
        num_heads: the number of heads.

    Returns:
        One permutation (int array) per group.

    Example:
        >>> cost = np.zeros((4, 4)); cost[0, 3] = cost[1, 2] = cost[2, 1] = cost[3, 0] = 1
        >>> match_heads([cost], 2)[0].tolist()
        [3, 2, 1, 0]
    """
    dims = [len(c) // num_heads for c in costs]
    value = np.zeros((num_heads, num_heads))
    inner: dict[tuple[int, int, int], np.ndarray] = {}
    for h in range(num_heads):
        for g in range(num_heads):
            for k, (c, d) in enumerate(zip(costs, dims, strict=True)):
                block = c[h * d : (h + 1) * d, g * d : (g + 1) * d]
                rows, cols = linear_sum_assignment(block, maximize=True)
                value[h, g] += block[rows, cols].sum()
                inner[k, h, g] = cols
    _, sigma = linear_sum_assignment(value, maximize=True)
    return [
        np.concatenate([sigma[h] * d + inner[k, h, sigma[h]] for h in range(num_heads)])
        for k, d in enumerate(dims)
    ]


def attention_function(tracer: _Tracer, node: fx.Node, infos: list[Any]) -> Any:
    """Attention written with ``F.scaled_dot_product_attention``: ``view``/``reshape`` of a
    projection to ``(B, T, heads, d)``, ``transpose(1, 2)``, the attention (query and key
    in one group, value in another, heads shared) and back. ``None``: not one of these."""
    method = node.target if node.op == "call_method" else None
    space, layout = infos[0]
    split = isinstance(layout, tuple)
    if method in ("view", "reshape") and len(infos) == 1:
        shape = list(node.args[1:])
        shape = list(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        if layout == "last" and len(shape) == 4 and isinstance(shape[2], int):
            return space, ("heads", shape[2])
        if split and layout[0] == "heads" and len(shape) == 3:
            return space, "last"
        return None
    if method == "transpose" and split and list(node.args[1:3]) in ([1, 2], [2, 1]):
        return space, ("heads_t" if layout[0] == "heads" else "heads", layout[1])
    if node.target is F.scaled_dot_product_attention and len(node.args) >= 3:
        found = [tracer.info.get(n) if isinstance(n, fx.Node) else None for n in node.args[:3]]
        qkv = [i for i in found if isinstance(i, tuple)]
        layouts = {i[1] for i in qkv}
        if len(qkv) != 3 or len(layouts) != 1 or not isinstance(next(iter(layouts)), tuple):
            return None
        q, k, v = qkv
        (_, num), spaces = next(iter(layouts)), tracer.spaces
        for n in tracer.tensors(node):
            info = tracer.info[n]
            if n not in node.args[:3] and isinstance(info, tuple):
                if not spaces.fixed[spaces.find(info[0])]:
                    return None  # a mask in permutable channels
        qk = spaces.union(q[0], k[0], f"operation {node.name!r}")
        tracer.heads[node.name] = (num, (qk, v[0]))
        return v[0], ("heads_t", num)
    return None
