"""The permutation symmetry of a network, derived from its module graph with ``torch.fx``.

Hidden units of a network can be reordered without changing its function: the rows of a
layer's weight and its bias, and the matching columns of every layer that reads them. Each
set of units that must move together is a *permutation group*; :func:`permutation_spec`
finds them by tracing the model and following every tensor's channel space:

- ``Linear`` and ``Conv`` (``groups=1`` or depthwise) open a new space for their outputs
  and read their input's in their weight's axis 1; ``Embedding`` opens one in its axis 1;
- ``BatchNorm``, ``LayerNorm`` and ``RMSNorm`` (over the channel dimension) carry their
  parameters and running statistics with their input's channels;
- elementwise functions, dropout and pooling keep the space; ``flatten`` of a conv map
  keeps it with blocks of ``H * W`` features per channel;
- ``x + y`` and ``x * y`` make the two spaces one (residual streams share one permutation
  across blocks; gated units, as in SwiGLU, too); a tied weight makes its uses one;
- ``nn.MultiheadAttention``, and attention written with ``view`` to heads, ``transpose``
  and ``F.scaled_dot_product_attention``, are permuted by whole heads, with the query/key
  and the value dimensions of each head permuted apart (:mod:`~.attention`);
- the model's inputs, its buffers and its outputs are fixed (never permuted).

Hugging Face GPT-2 and Llama, which fx cannot trace, have hand-written specs (:mod:`~.gpt2`,
:mod:`~.llama`; activations recorded by hooks at :mod:`~.probes`; no REPAIR).

Anything else that reads a permutable space is refused before any matching, naming the
module, unless it has no parameters and no layer reads its result (a softmax on the
logits): then the space is fixed.

Example:
    >>> from torch import nn
    >>> spec = permutation_spec(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    >>> spec.sizes, spec.axes["2.weight"]
    ({'0': 8}, (None, '0'))
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from . import ops
from .attention import Outputs, attention_call, attention_function
from .gpt2 import gpt2_axes
from .llama import llama_axes
from .repeated import Repeated
from .residual import RESIDUAL
from .spaces import Spaces

__all__ = ["PermutationSpec", "permutation_spec"]


@dataclass(frozen=True)
class PermutationSpec:
    """The permutation groups of a network and where each one acts.

    Attributes:
        sizes: ``{group: number of units}``, one entry per permutable group, named after
            the module that opens it.
        axes: ``{state name: group or None per axis}`` for every tensor that moves; tied
            names appear each. A permuted axis longer than its group holds blocks of equal
            size, one per unit (a linear layer after ``flatten`` of a conv map). An axis
            that packs several projections (attention's ``in_proj_weight``) holds a tuple:
            one group (or None) per equal segment; one read by several copies of a group's
            units (grouped-query attention), a :class:`~.repeated.Repeated`.
        parameters: the state names that are parameters (the rest are buffers).
        layers: ``(module name, group, channel dim)`` of the linear and conv layers whose
            outputs are permutable units, in graph order (where REPAIR rescales).
        nodes: ``{graph node: (group, channel dim)}`` of the activations whose channels
            are one group's units (what activation matching correlates).
        heads: ``{attention module: (num_heads, groups)}``: groups of ``num_heads * d``
            units permuted by whole heads, one permutation of the heads shared by all the
            groups (query/key dimensions, value dimensions), and within each head one
            permutation per group.
        first: groups weight matching visits first (a residual stream its embedding pins).
    """

    sizes: dict[str, int]
    axes: dict[str, tuple[Any, ...]]
    parameters: frozenset[str]
    layers: tuple[tuple[str, str, int], ...]
    nodes: dict[str, tuple[str, int]]
    heads: dict[str, tuple[int, tuple[str, ...]]] = field(default_factory=dict)
    first: tuple[str, ...] = ()

    def axes_of(self, group: str) -> list[tuple[str, int, int | None]]:
        """``(state name, axis, segment)`` of every axis (or segment of a packed axis, else
        ``None``) that ``group`` permutes."""
        out: list[tuple[str, int, int | None]] = []
        for name, axes in self.axes.items():
            for i, g in enumerate(axes):
                if g == group or isinstance(g, Repeated) and g.group == group:
                    out.append((name, i, None))
                elif isinstance(g, tuple):
                    out += [(name, i, j) for j, h in enumerate(g) if h == group]
        return out


_DIM1, _LAST, _FLAT, _ANY = "dim1", "last", "flat", "any"  # where a tensor's channels are


class _Tracer:
    def __init__(self, model: nn.Module):
        self.model = model
        try:
            self.graph = fx.symbolic_trace(model).graph
        except Exception as exc:  # fx raises many types; the message names the model
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(
                f"cannot derive the permutation symmetry of {type(model).__name__}: expected "
                f"a model torch.fx can trace, got {first}"
            ) from exc
        self.modules = dict(model.named_modules())
        self.spaces = Spaces()
        self.info: dict[fx.Node, Any] = {}  # node -> (space, layout) | "meta" | "param"
        self.slots: dict[str, list[int | tuple[int, ...] | None]] = {}  # name -> space per axis
        self.layers: list[tuple[str, int, int]] = []
        self.pending: list[tuple[fx.Node, list[int], bool]] = []
        self.heads: dict[str, tuple[int, tuple[int, ...]]] = {}
        self.parameter_names = {n for n, _ in model.named_parameters(remove_duplicate=False)}

    # -- helpers
    def tensors(self, node: fx.Node) -> list[fx.Node]:
        return [n for n in node.all_input_nodes if self.info.get(n) != "meta"]

    def put(self, module: str, param: str, axes: list[int | tuple[int, ...] | None]) -> None:
        """The spaces of a parameter's axes (a tuple: the segments of a packed axis)."""
        self.slots[f"{module}.{param}" if module else param] = axes

    def unknown(self, node: fx.Node, has_params: bool) -> tuple[int, str]:
        inputs = [self.info[n] for n in self.tensors(node)]
        if any(i == "param" for i in inputs):
            has_params = True
        spaces = [i[0] for i in inputs if isinstance(i, tuple)]
        spaces += [i.space for i in inputs if isinstance(i, Outputs)]
        if any(not self.spaces.fixed[self.spaces.find(s)] for s in spaces):
            self.pending.append((node, spaces, has_params))
        return self.spaces.new(node.name, fixed=True), _ANY

    # -- one node
    def visit(self, node: fx.Node) -> Any:
        if node.op == "placeholder":
            return self.spaces.new(node.name, fixed=True), _ANY
        if node.op == "get_attr":
            if node.target in self.parameter_names:
                return "param"
            return self.spaces.new(node.name, fixed=True), _ANY  # a buffer: a constant
        if node.op == "output":
            for n in self.tensors(node):
                info = self.info[n]
                if isinstance(info, (tuple, Outputs)):
                    self.spaces.fix(info.space if isinstance(info, Outputs) else info[0])
            return None
        if node.op == "call_module":
            return self.call_module(node, self.modules[node.target])
        if node.op == "call_method" and node.target in ops.META_METHODS:
            return "meta"
        if node.target is getattr and node.args[1] in ("shape", "dtype", "device"):
            return "meta"
        if node.target in ops.SIZE_ARITHMETIC and all(
            self.info.get(n) == "meta" for n in node.all_input_nodes
        ):
            return "meta"  # arithmetic on sizes
        if node.op == "call_function" and node.target is operator.getitem:
            source = node.args[0]
            info = self.info.get(source) if isinstance(source, fx.Node) else None
            if isinstance(info, Outputs):  # attention's (output, weights)
                if node.args[1] == 0:
                    return info.space, _LAST
                return self.spaces.new(node.name, fixed=True), _ANY
        return self.call_function(node)

    def call_module(self, node: fx.Node, m: nn.Module) -> Any:
        name = str(node.target)  # a call_module node's target is the module's name
        if isinstance(m, nn.MultiheadAttention):
            return attention_call(self, node, m)
        inputs = self.tensors(node)
        if len(inputs) != 1 or not isinstance(self.info[inputs[0]], tuple):
            return self.unknown(node, any(True for _ in m.parameters()))
        space, layout = self.info[inputs[0]]
        fixed_in = self.spaces.fixed[self.spaces.find(space)]
        if isinstance(m, nn.Linear) and (layout in (_LAST, _FLAT) or fixed_in):
            out = self.spaces.new(name, m.out_features)
            self.put(name, "weight", [out, space])
            if m.bias is not None:
                self.put(name, "bias", [out])
            self.layers.append((name, out, -1))
            return out, _LAST
        if isinstance(m, nn.modules.conv._ConvNd) and not m.transposed:
            if layout in (_DIM1, _ANY) or fixed_in:
                if m.groups == 1:
                    out = self.spaces.new(name, m.out_channels)
                    self.put(name, "weight", [out, space] + [None] * (m.weight.dim() - 2))
                elif m.groups == m.in_channels == m.out_channels:  # depthwise
                    out = space
                    self.put(name, "weight", [out] + [None] * (m.weight.dim() - 1))
                else:
                    return self.unknown(node, True)
                if m.bias is not None:
                    self.put(name, "bias", [out])
                self.layers.append((name, out, 1))
                return out, _DIM1
        if isinstance(m, nn.Embedding):
            out = self.spaces.new(name, m.embedding_dim)
            self.put(name, "weight", [None, out])
            return out, _LAST
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            for p in ("weight", "bias", "running_mean", "running_var"):
                if getattr(m, p, None) is not None:
                    self.put(name, p, [space])
            return space, layout
        if isinstance(m, ops.NORMS) and len(m.normalized_shape) == 1 and layout in (_LAST, _ANY):
            for p in ("weight", "bias"):
                if getattr(m, p, None) is not None:
                    self.put(name, p, [space])
            return space, layout
        if isinstance(m, ops.ELEMENTWISE_MODULES):
            return space, layout
        if isinstance(m, ops.POOLS) and layout in (_DIM1, _ANY):
            return space, layout
        if isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1:
            if layout != _LAST:  # (N, T, C) would interleave: refused unless fixed
                return space, _FLAT if layout == _DIM1 else layout
        return self.unknown(node, any(True for _ in m.parameters()))

    def call_function(self, node: fx.Node) -> Any:
        target = node.target
        inputs = self.tensors(node)
        infos = [self.info[n] for n in inputs]
        if not infos or not all(isinstance(i, tuple) for i in infos):
            return self.unknown(node, False)
        heads = attention_function(self, node, infos)
        if heads is not None:
            return heads
        space, layout = infos[0]
        method = target if node.op == "call_method" else None
        if (target in ops.BINARY or method in ("add", "sub", "mul")) and len(infos) == 2:
            (s1, l1), (s2, l2) = infos
            if l1 != l2 and _ANY not in (l1, l2):
                return self.unknown(node, False)
            return self.spaces.union(s1, s2, f"node {node.name!r}"), l1 if l1 != _ANY else l2
        if len(infos) != 1:
            return self.unknown(node, False)
        if target in ops.BINARY or target in ops.SCALAR or method in ("add", "sub", "mul", "div"):
            if node.args and node.args[0] is inputs[0]:
                return space, layout  # tensor with a scalar
            return self.unknown(node, False)
        if target in ops.ELEMENTWISE_FUNCTIONS or method in ops.ELEMENTWISE_METHODS:
            return space, layout
        if target in ops.POOL_FUNCTIONS and layout in (_DIM1, _ANY):
            return space, layout
        if target is torch.flatten or method == "flatten":
            rest = list(node.args[1:]) + list(node.kwargs.values())
            if rest[:1] == [1] and rest[1:] in ([], [-1]):
                if layout != _LAST:
                    return space, _FLAT if layout == _DIM1 else layout
        if method in ("view", "reshape") and len(node.args) == 3 and node.args[2] == -1:
            first = node.args[1]
            if isinstance(first, fx.Node) and self.info.get(first) == "meta":
                if layout != _LAST:
                    return space, _FLAT if layout == _DIM1 else layout
        if (target is torch.mean or method == "mean") and layout in (_DIM1, _ANY):
            dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
            keep = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
            if isinstance(dims, (tuple, list)) and sorted(dims) in ([2, 3], [-2, -1]):
                return space, layout if keep else _LAST
        return self.unknown(node, False)

    # -- the whole graph
    def run(self) -> PermutationSpec:
        nodes = list(self.graph.nodes)
        for node in nodes:
            self.info[node] = self.visit(node)
        self.tie()
        self.settle(nodes)
        for _, members in self.heads.values():  # heads move together or not at all
            if any(self.spaces.fixed[self.spaces.find(m)] for m in members):
                for m in members:
                    self.spaces.fix(m)
        return self.spec(nodes)

    def tie(self) -> None:
        """Tied parameters: every use of one tensor permutes its axes alike."""
        owner: dict[int, str] = {}
        for name, p in self.model.named_parameters(remove_duplicate=False):
            first = owner.setdefault(id(p), name)
            if first == name or name not in self.slots and first not in self.slots:
                continue
            a = self.slots.get(first, [None] * p.dim())
            b = self.slots.get(name, [None] * p.dim())
            merged: list[Any] = []
            for x, y in zip(a, b, strict=True):
                if isinstance(x, int) and isinstance(y, int):
                    merged.append(self.spaces.union(x, y, f"the tied weight {name!r}"))
                else:
                    for s in (x if isinstance(x, tuple) else (x,)) + (
                        y if isinstance(y, tuple) else (y,)
                    ):
                        if s is not None:
                            self.spaces.fix(s)  # permuted in one use, not in the other
                    merged.append(None)
            self.slots[first] = self.slots[name] = merged

    def settle(self, nodes: list[fx.Node]) -> None:
        """Accept the pending unknown operations that end the network, refuse the others."""
        weighted = {n for n in nodes if n.op == "get_attr" and n.target in self.parameter_names} | {
            n
            for n in nodes
            if n.op == "call_module" and any(True for _ in self.modules[n.target].parameters())
        }
        feeds: dict[fx.Node, bool] = {}
        for node in reversed(nodes):
            feeds[node] = any(u in weighted or feeds.get(u, False) for u in node.users)
        fixed = self.spaces.fixed
        find = self.spaces.find
        for node, spaces, has_params in self.pending:
            if not has_params and not feeds[node]:
                for s in spaces:
                    self.spaces.fix(s)  # an operation on the outputs: its input stays put
        for node, spaces, _ in self.pending:
            if any(not fixed[find(s)] for s in spaces):
                what = (
                    f"module {node.target!r} ({type(self.modules[node.target]).__name__})"
                    if node.op == "call_module"
                    else f"operation {node.name!r} "
                    f"({getattr(node.target, '__name__', node.target)})"
                )
                raise ValueError(
                    f"cannot derive the permutation symmetry at {what}: expected layers whose "
                    "channels can be permuted (Linear, Conv, Embedding, norms, elementwise "
                    "functions, residual sums), got one that reads permutable channels"
                )

    def spec(self, nodes: list[fx.Node]) -> PermutationSpec:
        sp = self.spaces
        names: dict[int, str] = {}
        sizes: dict[str, int] = {}
        for i in range(len(sp.parent)):
            root = sp.find(i)
            if not sp.fixed[root] and root not in names:
                names[root] = sp.name[root]
                sizes[sp.name[root]] = int(sp.size[root])  # type: ignore[arg-type]

        def group(s: Any) -> Any:
            if isinstance(s, tuple):
                segments = tuple(group(x) for x in s)
                return segments if any(g is not None for g in segments) else None
            return None if s is None else names.get(sp.find(s))

        axes = {}
        for key, slots in self.slots.items():
            groups = tuple(group(s) for s in slots)
            if any(g is not None for g in groups):
                axes[key] = groups
        layers = tuple(
            (name, group(s), dim) for name, s, dim in self.layers if group(s) is not None
        )
        act = {}
        for node in nodes:
            info = self.info.get(node)
            if isinstance(info, tuple) and group(info[0]) is not None and info[1] in (_LAST, _DIM1):
                act[node.name] = (group(info[0]), -1 if info[1] == _LAST else 1)
        heads = {}
        for module, (num, members) in self.heads.items():
            kept = tuple(g for g in (group(m) for m in members) if g is not None)
            if kept:
                heads[module] = (num, kept)
        params = frozenset(self.parameter_names)
        return PermutationSpec(sizes, axes, params, layers, act, heads)


def permutation_spec(model: nn.Module, *, residual: bool = False) -> PermutationSpec:
    """The permutation groups of ``model``, from its ``torch.fx`` graph (for Hugging Face
    GPT-2 and Llama, which fx refuses, :func:`~.gpt2.gpt2_axes`, :func:`~.llama.llama_axes`).

    Args:
        model: the network (not changed; traced symbolically, not run).
        residual: for GPT-2 and Llama, permute the residual stream too (group
            ``"residual"``; opt-in, the default gives their specs of before). A traced
            model's residual stream follows from its graph (``x + y``), always permuted.

    Returns:
        A :class:`PermutationSpec`.

    Raises:
        ValueError: ``torch.fx`` cannot trace the model, or a module or operation reads
            permutable channels in a way whose symmetry is unknown (the message names it).
    """
    try:
        return _Tracer(model).run()
    except ValueError:
        found = gpt2_axes(model, residual=residual) or llama_axes(model, residual=residual)
        if found is None:
            raise
    sizes, axes, heads = found
    params = frozenset(n for n, _ in model.named_parameters(remove_duplicate=False))
    first = (RESIDUAL,) if RESIDUAL in sizes else ()
    return PermutationSpec(sizes, axes, params, (), {}, heads, first)
