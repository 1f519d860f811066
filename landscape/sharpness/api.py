"""Several sharpness measures by name: :func:`sharpness`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..objective import Objective
from . import _checks
from .registry import MEASURES, route_settings
from .result import SharpnessResult

__all__ = ["sharpness"]

#: The measures whose recipe draws (``stored=False``) a sharded model takes.
_RECIPE_MEASURES = ("avg_l2", "adaptive_avg_l2", "rise", "pacbayes", "pacbayes_mag")


def sharpness(
    objective: Objective, names: str | Sequence[str], *, progress: bool = True, **settings: Any
) -> dict[str, SharpnessResult]:
    """Several measures by contract name, sharing settings such as ``rho`` and ``seed``.

    Each measure takes the settings it registered (see :data:`MEASURES` and its
    ``measure_*`` function) and its own defaults for the others; a setting given as ``None``
    means the default. ``seed`` goes to every measure that draws random numbers. Every name
    and setting is checked before any measure runs.

    Args:
        objective: the loss and data; its model is never changed.
        names: measure names, from :data:`MEASURES` (one name or a sequence).
        progress: show a tqdm bar for each measure.
        **settings: ``rho``, ``eps``, ``num_samples``, ``seed``, ``target``, ``batch_size``, ...

    Returns:
        ``{name: SharpnessResult}`` in the order asked.

    Raises:
        ValueError: an unknown measure name or setting, a setting that none of the chosen
            measures takes (the message names the measures that take it), or a bad value.
        TypeError: a setting of the wrong type (``seed=1.5``, ``num_samples=True``).

    Example:
        >>> from landscape.sharpness._example import example_objective
        >>> out = sharpness(example_objective(), ["worst_l2", "rise"], rho=0.1)
        >>> sorted(out)
        ['rise', 'worst_l2']
    """
    routed = route_settings(names, settings)
    sharded = getattr(objective, "sharded", None)  # not an Objective: refused next
    takes_sharded = sharded is not None and all(
        (name in ("lambda_max", "trace") and sharded == "FSDP2")
        or (name in _RECIPE_MEASURES and options.get("stored") is False)
        for name, options in routed.items()
    )
    _checks.check_objective(objective, sharded=takes_sharded)  # before any measure runs
    results = {}
    for name, options in routed.items():
        measure = MEASURES[name]
        results[name] = measure.function(objective, **measure.fixed, **options, progress=progress)
    return results
