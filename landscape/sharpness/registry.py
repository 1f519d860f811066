"""The registry of sharpness measures: each family registers its names and settings.

A *setting* (``rho``, ``num_samples``, ...) is declared once here with its check; a
*measure* is registered by its family module with the function that computes it, the
options its name fixes (``p=2`` for ``worst_l2``) and the settings it takes with their
defaults. :func:`route_settings` uses the registry to give each chosen measure the
settings it takes, and refuses a setting that none of them takes.

``seed`` is accepted by every measure: it is given to those that draw random numbers and
ignored by the deterministic ones (``fisher_rao``, ``relative_flatness``), so that one seed
can be passed to any selection of measures. ``params`` (the weights perturbed, see
:func:`landscape.params.select_names`) is a setting of every measure.

Example:
    >>> MEASURES["worst_l2"].fixed
    {'p': 2, 'adaptive': False}
    >>> "rho" in MEASURES["avg_l2"].defaults, "layer" in MEASURES["avg_l2"].defaults
    (True, False)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import checks, options
from ..options import values
from ..results.sharpness import CONTRACT_ORDER
from . import _checks

__all__ = [
    "DEFAULT_RHO",
    "MEASURES",
    "SETTINGS",
    "Measure",
    "Setting",
    "WarmStart",
    "check_settings",
    "register",
    "route_settings",
]

#: Default radius ``rho`` of each measure that has one (values in the range used by SAM,
#: ASAM and Andriushchenko et al. 2023; ``rise`` in filter-normalized units).
DEFAULT_RHO = {
    "worst_l2": 0.05,
    "worst_linf": 0.001,
    "adaptive_worst_l2": 0.5,
    "adaptive_worst_linf": 0.002,
    "avg_l2": 0.01,
    "adaptive_avg_l2": 0.1,
    "rise": 0.25,
}


@dataclass(frozen=True)
class Setting:
    """A setting that measures may take: its name, its check (returning the value to use,
    raising ``TypeError``/``ValueError`` otherwise) and a one-line description."""

    name: str
    check: Callable[[Any], Any]
    doc: str


class WarmStart:
    """The eigenvector of the last Lanczos run, to start the next one from.

    Give the same object as ``warm_start=`` to successive ``lambda_max`` calls at nearby
    weights: each run starts from the vector the previous one found (single-vector
    Lanczos) instead of a random one, and leaves its own here. Without a vector yet, with
    one of another size (other weights) or after a run that found none (a non-finite
    product), the run starts from the random vector of ``seed``. The value agrees with a
    cold start's to the Lanczos tolerance, not bit for bit.

    Attributes:
        vector: the last eigenvector (float64, on the model's device), or ``None``.

    Example:
        >>> from torch import nn
        >>> from landscape.objective import Objective
        >>> from landscape.sharpness import measure_hessian
        >>> x = torch.randn(20, 3, dtype=torch.float64)
        >>> objective = Objective(nn.Linear(3, 1).double(), (x, x.sum(1)), loss="mse")
        >>> start = WarmStart()
        >>> cold = measure_hessian(objective, warm_start=start, progress=False)
        >>> warm = measure_hessian(objective, warm_start=start, progress=False)
        >>> warm.settings["warm_start"], warm.extra["num_hvps"] < cold.extra["num_hvps"]
        (True, True)
    """

    def __init__(self) -> None:
        self.vector: torch.Tensor | None = None

    def __repr__(self) -> str:
        size = None if self.vector is None else self.vector.numel()
        return f"WarmStart(size={size})"


def check_warm_start(value: Any) -> WarmStart:
    """A :class:`WarmStart` (``TypeError`` otherwise)."""
    if not isinstance(value, WarmStart):
        raise TypeError(
            f"expected a landscape.sharpness.WarmStart for warm_start, got {type(value).__name__}"
        )
    return value


def check_optimizer(value: Any) -> Any:
    """A torch optimizer, a :class:`~landscape.optim.Preconditioner`, or a diagonal (a tensor
    or a ``{name: tensor}`` mapping); ``TypeError`` otherwise (read in full when measured)."""
    if isinstance(value, torch.optim.Optimizer | torch.Tensor | Mapping):
        return value
    if type(value).__name__ == "Preconditioner":  # landscape.optim's, not imported here
        return value
    raise TypeError(
        "expected a torch optimizer, a Preconditioner or a diagonal (tensor or {name: tensor}) "
        f"for optimizer, got {type(value).__name__}"
    )


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else check(value)


def _positive(name: str) -> Callable[[Any], float]:
    return lambda value: _checks.check_positive(name, value)


def _count(name: str) -> Callable[[Any], int]:
    return lambda value: _checks.check_count(name, value)


def _choice(name: str, *choices: str) -> Callable[[Any], str]:
    return lambda value: checks.check_choice(value, choices, name)


#: Every setting a measure can take, by name.
SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        Setting("seed", _checks.check_seed, "seeds every random draw of a measure"),
        Setting("rho", _optional(_positive("rho")), "radius or noise scale"),
        Setting("eps", _positive("eps"), "Keskar box size; PAC-Bayes magnitude floor"),
        Setting("num_samples", _count("num_samples"), "Monte Carlo draws or directions"),
        Setting("target", _positive("target"), "PAC-Bayes tolerated rise of the loss"),
        Setting("criterion", _choice("criterion", "loss", "accuracy"), "PAC-Bayes criterion"),
        Setting("rtol", _positive("rtol"), "relative width of the PAC-Bayes bracket"),
        Setting("batch_size", _optional(_count("batch_size")), "m of m-sharpness"),
        Setting("num_batches", _optional(_count("num_batches")), "batches used"),
        Setting("num_ascent_steps", _count("num_ascent_steps"), "ascent steps per restart"),
        Setting("num_steps", _count("num_steps"), "old name of num_ascent_steps (deprecated)"),
        Setting(
            "num_restarts", _optional(_count("num_restarts")), "local searches; the best is kept"
        ),
        Setting(
            "num_flips",
            _optional(lambda v: 0 if v == 0 and type(v) is int else _count("num_flips")(v)),
            "single-coordinate flips ending each worst_linf restart",
        ),
        Setting("step_size", _optional(_positive("step_size")), "first ascent step"),
        Setting("random_init", lambda v: _checks.check_flag("random_init", v), "random start"),
        Setting("subspace_dim", _optional(_count("subspace_dim")), "Keskar random subspace"),
        Setting("num_iters", _count("num_iters"), "L-BFGS-B iterations per start"),
        Setting("num_probes", _count("num_probes"), "Hutch++ probes for the trace"),
        Setting("tol", _optional(_positive("tol")), "Lanczos tolerance, relative to ||H||"),
        Setting("max_hvps", _count("max_hvps"), "Lanczos budget of Hessian-vector products"),
        Setting("warm_start", _optional(check_warm_start), "Lanczos from the last eigenvector"),
        Setting(
            "hvp",
            _optional(_choice("hvp", *values(options.HvpBackend))),
            "Hessian-vector products: exact, fd (FSDP2 models) or auto",
        ),
        Setting(
            "max_memory",
            _optional(lambda v: checks.check_count(v, "max_memory")),  # bytes: no draw limit
            "bytes a Hessian solver may hold",
        ),
        Setting("norm", _choice("norm", *values(options.Norm)), "rise directions"),
        Setting("ignore", _choice("ignore", *values(options.Ignore)), "rise: 1-D tensors"),
        Setting("layer", _optional(lambda v: _checks.check_name("layer", v)), "a 2-D weight"),
        Setting("params", _optional(_checks.check_selection), "the weights perturbed"),
        Setting(
            "stored",
            lambda v: _checks.check_flag("stored", v),
            "False: noise and rise directions made again from recipes, never held whole",
        ),
        Setting("optimizer", _optional(check_optimizer), "an optimizer or a diagonal P"),
        Setting("lr", _optional(_positive("lr")), "learning rate, for 2 / lr"),
        Setting("num_eigenpairs", _count("num_eigenpairs"), "top eigenvectors spanned"),
        Setting("max_batches", _optional(_count("max_batches")), "minibatches used"),
    ]
}

#: Settings every measure accepts (see the module doc).
COMMON = ("seed",)


@dataclass(frozen=True)
class Measure:
    """A registered measure.

    Attributes:
        name: its contract name.
        function: ``function(objective, **fixed, **settings) -> SharpnessResult``.
        fixed: the options its name fixes.
        defaults: the settings it takes, with their defaults (``None``: computed, e.g.
            ``rho`` from :data:`DEFAULT_RHO`).
        sampled: whether its value is a Monte Carlo estimate with an interval.
    """

    name: str
    function: Callable[..., Any]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    sampled: bool = False


#: Every measure by name, in the contract's order (others after, as registered).
MEASURES: dict[str, Measure] = {}


def _rank(name: str) -> int:
    return CONTRACT_ORDER.index(name) if name in CONTRACT_ORDER else len(CONTRACT_ORDER)


def register(
    name: str,
    function: Callable[..., Any],
    *,
    fixed: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
    sampled: bool = False,
) -> Measure:
    """Register a measure under ``name`` (done by each family module on import).

    Raises:
        ValueError: the name is taken, or a setting is not one of :data:`SETTINGS`.
    """
    if name in MEASURES:
        raise ValueError(f"a sharpness measure named {name!r} is already registered")
    defaults = dict(defaults or {})
    unknown = sorted(set(defaults) - set(SETTINGS))
    if unknown:
        raise ValueError(f"{name}: settings {unknown} are not declared in SETTINGS")
    measure = Measure(name, function, dict(fixed or {}), defaults, sampled)
    entries = sorted([*MEASURES.items(), (name, measure)], key=lambda item: _rank(item[0]))
    MEASURES.clear()
    MEASURES.update(entries)
    return measure


def check_settings(names: str | Sequence[str], settings: Mapping[str, Any]) -> list[str]:
    """Check measure names and settings before any work; return the names, deduplicated.

    A setting given as ``None`` means the default and is not checked.

    Raises:
        ValueError: an unknown measure, an unknown setting, a setting that none of the
            chosen measures takes (the message names those that do), or a bad value.
        TypeError: a setting of the wrong type (``seed=1.5``, ``num_samples=True``).

    Example:
        >>> check_settings(["avg_l2", "rise"], {"rho": 0.1, "seed": 3})
        ['avg_l2', 'rise']
        >>> try:
        ...     check_settings(["avg_l2"], {"layer": "fc.weight"})
        ... except ValueError as err:
        ...     print(str(err).split("; ")[1])
        it is taken by: relative_flatness
    """
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, Sequence) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"names must be a sequence of measure names, got {names!r}")
    unknown = [n for n in names if n not in MEASURES]
    if unknown:
        raise ValueError(f"unknown sharpness measure(s) {unknown}; valid names: {list(MEASURES)}")
    names = list(dict.fromkeys(names))
    bad = sorted(set(settings) - set(SETTINGS))
    if bad:
        raise ValueError(f"unknown setting(s) {bad}; valid settings: {sorted(SETTINGS)}")
    for key, value in settings.items():
        if value is None:
            continue
        if key not in COMMON and not any(key in MEASURES[n].defaults for n in names):
            takers = [n for n, m in MEASURES.items() if key in m.defaults]
            raise ValueError(
                f"setting {key!r} is not taken by the chosen measures {names}; "
                f"it is taken by: {', '.join(takers)}"
            )
        SETTINGS[key].check(value)
    return names


def route_settings(names: Sequence[str], settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Checked settings split by measure: ``{name: {setting: value}}``, each measure getting
    the non-``None`` settings it takes (its defaults for the others).

    Raises:
        ValueError, TypeError: as :func:`check_settings`.

    Example:
        >>> route_settings(["avg_l2", "fisher_rao"], {"num_samples": 5, "seed": 1})
        {'avg_l2': {'num_samples': 5, 'seed': 1}, 'fisher_rao': {}}
    """
    names = check_settings(names, settings)
    return {
        name: {k: v for k, v in settings.items() if v is not None and k in MEASURES[name].defaults}
        for name in names
    }
