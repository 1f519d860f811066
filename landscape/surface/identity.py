"""What a surface is made of, checked and recorded: the directions fitted to the model
(restricted to a selection, checked against the state), and the identity attributes that
name the run (the model, checkpoint, data, objective and directions), which a resumed file
must match.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch

from .._fingerprint import classes_sha256, model_probe
from .._provenance import model_sha256
from ..directions import Directions
from ..directions.recipes import is_recipe
from ..objective import Objective
from ..objective.sharded import compute_dtypes
from ..params import selection_attr
from ..shards import state_sha256  # a sharded model's: its pieces, every rank's


def check_direction(direction: Mapping[str, torch.Tensor], base: Mapping[str, torch.Tensor]):
    """Refuse a direction with a name or a shape the model's state does not have."""
    for name in direction:  # a recipe's shapes are read without making its values
        if name not in base:
            raise ValueError(f"direction has {name!r}, which the model's state lacks")
        shape = direction.shape(name) if is_recipe(direction) else direction[name].shape
        if tuple(shape) != tuple(base[name].shape):
            raise ValueError(
                f"direction {name!r} has shape {tuple(shape)}, "
                f"the model's has {tuple(base[name].shape)}"
            )


def restricted(directions: Directions, keep: set[str]) -> Directions:
    """``directions`` with only the entries named in ``keep``.

    Raises:
        ValueError: the directions move none of them.
    """

    def cut(state: Mapping[str, torch.Tensor] | None) -> Mapping[str, torch.Tensor] | None:
        if state is None:
            return None
        if is_recipe(state):
            return state.restricted(keep)
        return {n: t for n, t in state.items() if n in keep}

    x = cut(directions.x)
    if not x or (directions.y is not None and not cut(directions.y)):
        raise ValueError(
            f"the directions move none of the selected tensors {sorted(keep)[:5]}; select "
            "tensors the directions hold, or make the directions with the same params="
        )
    return Directions(x, cut(directions.y), kind=directions.kind, settings=directions.settings,
                      x_end=cut(directions.x_end))  # fmt: skip


def starts_at(
    direction: Mapping[str, torch.Tensor],
    end: Mapping[str, torch.Tensor],
    base: Mapping[str, torch.Tensor],
) -> bool:
    """Whether ``direction`` is ``end - base`` exactly (one read for all tensors)."""
    if any(n not in end for n in direction):
        return False
    agree = [(end[n].to(base[n]) - base[n] == d.to(base[n])).all() for n, d in direction.items()]
    return bool(torch.stack(agree).all()) if agree else True


def axis_labels(directions: Directions) -> tuple[str, str]:
    """The names of the x and y axes for plots, from the kind of directions."""
    if directions.kind == "interpolation":
        return "interpolation coefficient", "direction y"
    if directions.kind == "random":
        norm = directions.settings.get("norm", "filter")
        return f"random direction x ({norm}-normalized)", f"random direction y ({norm}-normalized)"
    if directions.kind == "checkpoints" and directions.settings.get("dir_type") == "states":
        note = " (states: buffers move too)"
    elif directions.kind == "checkpoints" and directions.settings.get("buffers"):
        note = " (weights only: buffers kept at a)"
    else:
        note = ""
    return f"{directions.kind} direction x{note}", f"{directions.kind} direction y{note}"


def directions_sha256(used: tuple[Mapping[str, torch.Tensor], ...]) -> str:
    """The fingerprint of the directions: of their tensors, or of the recipes (their
    settings and names; the weights they follow are the checkpoint's fingerprint)."""
    recipes = [d for d in used if is_recipe(d)]
    if used and len(recipes) == len(used):
        text = json.dumps([[d.recipe(), list(d)] for d in recipes], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()
    named = {f"{axis}/{n}": t for axis, d in zip("xy", used, strict=False) for n, t in d.items()}
    return state_sha256(named)


def identity(
    objective: Objective,
    directions: Directions,
    used: tuple[Mapping[str, torch.Tensor], ...],
    selected: list[str],
    names: tuple[str, ...],
    points_per_pass: int,
    attrs: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The attributes that name a run: recorded in its file and Surface, and compared on
    a resume."""
    base = objective.base_state
    x_label, y_label = axis_labels(directions)
    sha = objective.data_sha256  # a method since 0.2, an attribute in 0.1
    dtypes = compute_dtypes(objective.model) if getattr(objective, "sharded", None) else []
    found: dict[str, Any] = {
        "model": type(objective.model).__qualname__,
        "model_sha256": model_sha256(objective.model),
        "model_classes_sha256": classes_sha256(objective.model),
        "model_probe": model_probe(objective),
        "checkpoint_sha256": state_sha256(base),
        "data_sha256": sha() if callable(sha) else sha,
        "num_examples": objective.num_examples,
        "loss": objective.loss_name,
        # recorded for a mean only: files without it (all of 0.1's) hold batch sums
        **({"loss_reduction": "mean"} if objective.loss_reduction == "mean" else {}),
        "metrics": list(names),
        "train_mode": objective.train_mode,
        **({"objective_seed": objective.seed} if objective.train_mode else {}),
        "precision": objective.precision,
        # FSDP2's mixed precision: the forward computes in these dtypes
        **({"compute_dtype": ",".join(dtypes)} if dtypes else {}),
        "points_per_pass": points_per_pass,
        "directions": directions.kind,
        "directions_sha256": directions_sha256(used),
        "norm": directions.settings.get("norm", "none"),
        "ignore": directions.settings.get("ignore", "none"),
        "dir_type": directions.settings.get("dir_type", "weights"),
        "seed": directions.settings.get("seed", -1),
        "direction_settings": {k: v for k, v in directions.settings.items() if k != "cosine"},
        "params": selection_attr(selected, base),
        "x_label": x_label,
        "y_label": y_label,
        **dict(attrs or {}),
    }
    if directions.cosine is not None:
        found["cosine"] = directions.cosine
    return found
