"""Diagonal preconditioners read from an optimizer's state, as its step applies them.

Every optimizer read here updates each weight as ``w <- w - lr * (P^-1 d + decay * w)``
with a diagonal ``P``, a direction ``d`` (the gradient, a momentum buffer or Adam's first
moment) and a decoupled weight decay (AdamW's). :func:`preconditioner` returns ``P``, ``d``
and the decay per weight, and the optimizer's stability threshold: on a quadratic whose
preconditioned curvature ``lambda_1(P^-1 H)`` exceeds it, the iteration diverges (Cohen et
al. 2022, "Adaptive Gradient Methods at the Edge of Stability").

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(3, 1)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> round(preconditioner(opt, model).threshold, 9)  # (2 + 2 * 0.9) / 0.1
    38.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = [
    "SUPPORTED",
    "Preconditioner",
    "optimizer_threshold",
    "preconditioner",
    "stability_threshold",
]

#: The optimizers whose preconditioner is diagonal and read here.
SUPPORTED = ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad")


@dataclass(frozen=True, eq=False)
class Preconditioner:
    """An optimizer's update ``w <- w - lr * (P^-1 d + decay * w)``, weight by weight.

    Attributes:
        diagonal: ``{name: P}``, float64 tensors shaped like the weights; per-group learning
            rates are folded in (``P`` of a group with learning rate ``r * lr`` is divided by
            ``r``).
        lr: the reference learning rate ``eta`` (the largest of the groups').
        threshold: the stability threshold of ``lambda_1(P^-1 H)`` for this update on a
            quadratic, ``nan`` when unknown (a diagonal given by hand).
        direction: ``{name: d}`` of the coming step (``when == "next"``); ``None`` otherwise.
        decay: ``{name: c}`` decoupled weight decay (AdamW's ``lr_group / lr * wd``), 0 else.
        l2: ``{name: c}`` weight decay added to the gradient (coupled: the optimizer sees the
            Hessian of ``loss + c/2 ||w||^2``, that is ``H + c I``).
        optimizer: the optimizer's class name; step: its step count (0 for SGD).
        when: ``"next"`` (the coming step, its gradients in ``P`` and ``d``) or ``"last"``
            (the state as the last step left it).
        settings: the hyper-parameters read, for the record.
    """

    diagonal: dict[str, torch.Tensor]
    lr: float
    threshold: float
    direction: dict[str, torch.Tensor] | None = None
    decay: dict[str, float] = field(default_factory=dict)
    l2: dict[str, float] = field(default_factory=dict)
    optimizer: str = "diagonal"
    step: int = 0
    when: str = "last"
    settings: dict[str, Any] = field(default_factory=dict)

    def update(self, weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``(w_before - w_after) / lr`` of the next step: ``P^-1 d + decay * w`` per weight.

        Raises:
            ValueError: no direction is known (the weights had no gradients).
        """
        if self.direction is None:
            raise ValueError(
                "expected a preconditioner of the coming step (when='next'), got one of the "
                "last step: read it with next_step=True after loss.backward()"
            )
        out = {}
        for name, p in self.diagonal.items():
            w = weights[name].detach().to(torch.float64)
            out[name] = self.direction[name] / p + self.decay.get(name, 0.0) * w
        return out


def stability_threshold(
    lr: float, *, momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False
) -> float:
    """The largest stable ``lambda_1(P^-1 H)`` of ``w <- w - lr P^-1 d`` on a quadratic.

    ``2 / lr`` without momentum; ``(2 + 2 m) / (lr (1 - dampening))`` for heavy-ball momentum
    ``b <- m b + (1 - dampening) g`` (torch's SGD and RMSprop); ``(2 + 2 m) / (lr (1 + 2 m))``
    for torch's Nesterov form. Adam's ``d = m``, an average ``m <- b1 m + (1 - b1) g``, is
    heavy-ball momentum with dampening ``b1``: ``(2 + 2 b1) / (lr (1 - b1))``, 38/lr for
    ``b1 = 0.9``.

    Example:
        >>> round(stability_threshold(0.1, momentum=0.9, dampening=0.9), 9)  # Adam, beta1 0.9
        380.0
    """
    if nesterov:
        return (2 + 2 * momentum) / (lr * (1 + 2 * momentum))
    return (2 + 2 * momentum) / (lr * (1 - dampening))


def _float(x: Any) -> float:
    return float(x.item() if isinstance(x, torch.Tensor) else x)


def _names(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[int, str]:
    names = {id(p): n for n, p in model.named_parameters(remove_duplicate=True)}
    for group in optimizer.param_groups:
        for p in group["params"]:
            if id(p) not in names:
                raise ValueError(
                    f"expected the optimizer's parameters to be the model's, got a parameter "
                    f"of shape {tuple(p.shape)} that is not in {type(model).__name__}"
                )
    return names


def _check_kind(optimizer: Any) -> str:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"expected a torch.optim.Optimizer, got {type(optimizer).__name__}")
    kind = type(optimizer).__name__
    if type(optimizer) not in (getattr(torch.optim, k) for k in SUPPORTED):
        raise ValueError(
            f"expected an optimizer with a diagonal preconditioner ({', '.join(SUPPORTED)}), "
            f"got {kind}; non-diagonal ones (Shampoo, Muon, L-BFGS, ...) have no operator yet: "
            "pass the diagonal yourself as a tensor or a {name: tensor} mapping"
        )
    for group in optimizer.param_groups:
        if group.get("maximize", False):
            raise ValueError(f"expected a minimizing optimizer, got {kind}(maximize=True)")
    return kind


def _group_terms(kind: str, group: dict, state: dict, g: torch.Tensor | None, w: torch.Tensor):
    """``(P, d, step, l2, decoupled)`` of one weight, in float64; ``d`` is None without ``g``."""
    wd = _float(group.get("weight_decay", 0.0))
    decoupled = kind == "AdamW" or bool(group.get("decoupled_weight_decay", False))
    l2 = 0.0 if decoupled else wd
    if g is not None:
        g = g.detach().to(torch.float64) + l2 * w
    step = int(_float(state.get("step", 0)))
    one = torch.ones_like(w)
    if kind == "SGD":
        momentum, damp = group["momentum"], group["dampening"]
        d = g
        if g is not None and momentum:
            buf = state.get("momentum_buffer")
            buf = g if buf is None else momentum * buf.to(torch.float64) + (1 - damp) * g
            d = g + momentum * buf if group["nesterov"] else buf
        return one, d, step, l2, 0.0
    if kind in ("Adam", "AdamW"):
        b1, b2 = group["betas"]
        m = state.get("exp_avg", torch.zeros_like(w)).to(torch.float64)
        v = state.get("exp_avg_sq", torch.zeros_like(w)).to(torch.float64)
        vmax = state.get("max_exp_avg_sq")
        if g is not None:
            m, v, step = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g, step + 1
            if vmax is not None:
                vmax = torch.maximum(vmax.to(torch.float64), v)
        if group["amsgrad"] and vmax is not None:
            v = vmax.to(torch.float64)
        if step == 0:
            raise ValueError(
                f"expected an {kind} that has taken a step, got one at step 0: read it after "
                "a step, or with next_step=True after loss.backward()"
            )
        bc1, bc2 = 1 - b1**step, 1 - b2**step
        p = bc1 * (v.sqrt() / math.sqrt(bc2) + group["eps"])
        return p, (m if g is not None else None), step, l2, wd if decoupled else 0.0
    if kind == "RMSprop":
        alpha, eps, momentum = group["alpha"], group["eps"], group["momentum"]
        v = state.get("square_avg", torch.zeros_like(w)).to(torch.float64)
        ga = state.get("grad_avg", torch.zeros_like(w)).to(torch.float64)
        if g is not None:
            v, ga, step = alpha * v + (1 - alpha) * g * g, alpha * ga + (1 - alpha) * g, step + 1
        avg = (v - ga * ga if group["centered"] else v).sqrt() + eps
        d = g
        if g is not None and momentum:
            buf = state.get("momentum_buffer", torch.zeros_like(w)).to(torch.float64)
            d = (momentum * buf + g / avg) * avg  # so that P^-1 d is the new buffer
        return avg, d, step, l2, 0.0
    # Adagrad
    total = state.get("sum", torch.zeros_like(w)).to(torch.float64)
    if g is not None:
        total, step = total + g * g, step + 1
    scale = 1 + (max(step, 1) - 1) * group["lr_decay"]  # lr / the step's lr
    return (total.sqrt() + group["eps"]) * scale, g, step, l2, 0.0


def optimizer_threshold(optimizer: torch.optim.Optimizer) -> float:
    """The stability threshold of ``lambda_1(P^-1 H)`` for the optimizer as it is now (its
    largest learning rate), without reading its state.

    Example:
        >>> from torch import nn
        >>> optimizer_threshold(torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.5))
        4.0
    """
    kind = _check_kind(optimizer)
    groups = [g for g in optimizer.param_groups if g["params"]]
    return _threshold(kind, optimizer, max(_float(g["lr"]) for g in groups))


def _threshold(kind: str, optimizer: torch.optim.Optimizer, lr: float) -> float:
    group = optimizer.param_groups[0]
    if kind == "SGD":
        return stability_threshold(
            lr, momentum=group["momentum"], dampening=group["dampening"], nesterov=group["nesterov"]
        )
    if kind in ("Adam", "AdamW"):
        b1 = group["betas"][0]
        return stability_threshold(lr, momentum=b1, dampening=b1)
    if kind == "RMSprop":
        return stability_threshold(lr, momentum=group["momentum"])
    return stability_threshold(lr)


def preconditioner(
    optimizer: torch.optim.Optimizer, model: nn.Module, *, next_step: bool = False
) -> Preconditioner:
    """The diagonal preconditioner of ``optimizer`` (SGD, Adam, AdamW, RMSprop, Adagrad): as
    its last step applied it (the state as that step left it), or with ``next_step=True`` as
    its coming step will, from the gradients the weights hold now (call it after
    ``loss.backward()`` and before ``optimizer.step()``).

    Nothing is changed: neither the optimizer's state nor the model.

    Args:
        optimizer: the optimizer, over parameters of ``model``.
        model: the model, for the names of the weights.
        next_step: read the coming step (the gradients included) instead of the last one.

    Raises:
        ValueError: an optimizer without a diagonal preconditioner (named), ``maximize=True``,
            a parameter that is not the model's, groups whose momentum or betas differ
            (their thresholds differ), ``next_step`` without gradients, or an adaptive
            optimizer that has taken no step read without ``next_step``.
        TypeError: not an optimizer.

    Example:
        >>> from torch import nn
        >>> model = nn.Linear(2, 1)
        >>> opt = torch.optim.Adam(model.parameters(), lr=0.01)
        >>> model(torch.ones(1, 2)).sum().backward()
        >>> P = preconditioner(opt, model, next_step=True)
        >>> P.when, round(P.threshold)
        ('next', 3800)
    """
    kind = _check_kind(optimizer)
    names = _names(optimizer, model)
    groups = [g for g in optimizer.param_groups if g["params"]]
    keys = ("momentum", "betas", "dampening", "nesterov")
    shapes = {tuple(g.get(k) for k in keys) for g in groups}
    if len(shapes) > 1:
        raise ValueError(f"expected the groups to share {', '.join(keys)}, got {sorted(shapes)}")
    lr = max(_float(g["lr"]) for g in groups)
    params = [p for g in groups for p in g["params"]]
    missing = [tuple(p.shape) for p in params if p.grad is None]
    if next_step and missing:
        raise ValueError(
            f"expected gradients for next_step=True (call loss.backward() first), got none for "
            f"{len(missing)} parameter(s), shapes {missing[:3]}"
        )
    has_grads = bool(next_step)
    diagonal, direction, decay, l2, steps = {}, {}, {}, {}, set()
    for group in groups:
        ratio = _float(group["lr"]) / lr
        for p in group["params"]:
            w = p.detach().to(torch.float64)
            grad = p.grad if has_grads else None
            P, d, step, c, wd = _group_terms(kind, group, optimizer.state.get(p, {}), grad, w)
            name = names[id(p)]
            diagonal[name] = P / ratio
            direction[name] = d
            l2[name], decay[name] = c, ratio * wd
            steps.add(step)
    hyper: dict[str, Any] = {
        k: v for k, v in groups[0].items() if k != "params" and isinstance(v, int | float)
    }
    hyper["betas"] = list(groups[0].get("betas", ()))
    return Preconditioner(
        diagonal=diagonal,
        lr=lr,
        threshold=_threshold(kind, optimizer, lr),
        direction=direction if has_grads else None,
        decay=decay,
        l2=l2,
        optimizer=kind,
        step=max(steps, default=0),
        when="next" if has_grads else "last",
        settings=hyper,
    )
