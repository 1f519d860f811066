"""The memory planner: for a Hessian job, the bytes each solver strategy needs, the choice
of the first that fits, and a refusal with the numbers before the first HVP."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..linalg import (
    eigenpairs_bound,
    host_basis_bytes,
    quadrature_bound,
    trace_bound,
    two_pass_bound,
)

__all__ = ["Plan", "Strategy", "plan_job", "plan_for", "available_memory", "hvp_bytes"]

#: Strategies of each job, in the order they are preferred (the first that fits is chosen).
STRATEGIES = {
    "eigenpairs": ("thick-restart", "host-basis", "two-pass", "full-basis"),
    "trace": ("hutch++", "hutchinson"),
    "density": ("reorthogonalize", "three-term"),
}
_AUTO_SKIPS = {"full-basis"}  # shown in the table, chosen only when asked for


@dataclass(frozen=True)
class Strategy:
    """One row of a plan: ``name``, the ``bytes`` it needs (solver's vectors plus one
    product), the ``hvps`` it may spend, and whether it ``fits`` under the cap."""

    name: str
    bytes: int
    hvps: int
    fits: bool


@dataclass(frozen=True)
class Plan:
    """What a job needs under each strategy, and the one chosen.

    Attributes:
        job: "eigenpairs", "trace" or "density".
        rows: a :class:`Strategy` per strategy, in order of preference.
        choice: the chosen strategy's name.
        bound_bytes: its bytes (the bound recorded in the result's settings).
        max_memory: the cap, in bytes.
        n: the operator's size; itemsize: bytes of its dtype.
    """

    job: str
    rows: tuple[Strategy, ...]
    choice: str
    bound_bytes: int
    max_memory: int
    n: int
    itemsize: int

    def table(self) -> str:
        """The plan as a text table, the chosen row marked.

        Example:
            >>> print(plan_job("trace", 10**6, 4, num_probes=9, max_memory=2**30).table())
            trace: n = 1000000, 4-byte entries, max_memory 1.074 GB
              strategy              bytes     HVPs  fits
            * hutch++               56 MB        9  yes
              hutchinson            32 MB        9  yes
        """
        lines = [
            f"{self.job}: n = {self.n}, {self.itemsize}-byte entries, "
            f"max_memory {_human(self.max_memory)}",
            f"  {'strategy':<16}{'bytes':>11}{'HVPs':>9}  fits",
        ]
        for row in self.rows:
            mark = "*" if row.name == self.choice else " "
            fits = "yes" if row.fits else "no"
            lines.append(f"{mark} {row.name:<16}{_human(row.bytes):>11}{row.hvps:>9}  {fits}")
        return "\n".join(lines)


def _human(count: float) -> str:
    """Bytes in the largest unit (of kB, MB, GB, TB) that keeps the number at least 1."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.4g} {unit}"
    return f"{int(count)} B"


def available_memory(device: torch.device | str) -> int:
    """Free bytes on ``device``: the CUDA device's free memory, or the host's available RAM.

    Example:
        >>> available_memory("cpu") > 0
        True
    """
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def hvp_bytes(op) -> int:
    """An estimate of the bytes a Hessian-vector product of ``op`` needs besides the
    solver's vectors: the sum over batches (one float64 vector), a gradient, its product
    and one temporary the size of the weights in the operator's dtype (a three-term density
    of a 1M-parameter MLP peaked at 7.1 model sizes, 3 of them the solver's). Not
    counted: the gradient graphs (those a :class:`~landscape.hessian.HessianOperator`
    keeps, at most its ``max_graph_bytes``, and one batch's), which are not known before
    a product runs; the estimate depends only on ``n`` and the dtype, so that a result's
    ``planned_bytes`` is reproducible."""
    size = torch.empty((), dtype=op.dtype).element_size()
    return op.size * (8 + 3 * size)


def _bytes(job: str, name: str, n: int, itemsize: int, settings: dict) -> tuple[int, int]:
    """``(bytes of the solver's vectors, HVPs at most)`` of one strategy."""
    if job == "eigenpairs":
        k, budget = settings["k"], settings["max_hvps"]
        if name == "two-pass":
            return two_pass_bound(n, k, itemsize), budget
        if name == "host-basis":
            return eigenpairs_bound(n, k, itemsize, host_basis=True), budget
        basis = min(budget, n) if name == "full-basis" else None
        return eigenpairs_bound(n, k, itemsize, max_basis=basis), budget
    if job == "trace":
        probes = settings["num_probes"]
        return trace_bound(n, probes, name, itemsize), probes
    probes, steps = settings["num_probes"], settings["num_steps"]
    work = 8 if itemsize >= 8 else 4
    reorthogonalize = name == "reorthogonalize"
    return quadrature_bound(n, steps, work, reorthogonalize), probes * steps


def plan_job(
    job: str,
    n: int,
    itemsize: int,
    *,
    max_memory: int,
    hvp: int = 0,
    strategy: str = "auto",
    refuse: bool = True,
    host_memory: int = 0,
    **settings,
) -> Plan:
    """The bytes each strategy of ``job`` needs for ``n`` entries of ``itemsize`` bytes,
    and the first that fits under ``max_memory`` (or ``strategy`` itself, checked).

    Bytes: the bound the solver states for its vectors
    (:func:`~landscape.linalg.eigenpairs_bound` for "thick-restart" and "full-basis" (a
    basis of ``max_hvps`` vectors), :func:`~landscape.linalg.two_pass_bound`,
    :func:`~landscape.linalg.trace_bound`, :func:`~landscape.linalg.quadrature_bound`)
    plus ``hvp``, the bytes one
    product needs (:func:`hvp_bytes` for a Hessian). Preferred first: thick restart (about
    the products of a full basis in ``3 k + 5`` vectors), "host-basis" (the same with the
    basis in host memory, :func:`~landscape.linalg.host_basis_bytes` of ``host_memory``:
    its bytes here are the device's, and it fits only where the host has room: never on
    a CPU device, whose host memory is the device's), two-pass (``k + 4`` vectors, about
    twice the products or more); Hutch++ (far fewer probes for a given error on a
    decaying spectrum), Hutchinson; the reorthogonalized density (the reference), the
    three-term one. "full-basis" is chosen only when asked for.

    Args:
        job: "eigenpairs" (settings ``k``, ``max_hvps``), "trace" (``num_probes``) or
            "density" (``num_probes``, ``num_steps``).
        n, itemsize: the operator's size and the bytes of its dtype.
        max_memory: the cap in bytes.
        hvp: bytes one product needs besides the solver's vectors.
        strategy: "auto", or one of the job's strategies.
        refuse: raise when nothing fits; else the plan has ``choice=""`` (for a table).
        host_memory: host bytes the "host-basis" strategy may hold (0: none).

    Returns:
        a :class:`Plan`.

    Raises:
        ValueError: unknown job or strategy.
        RuntimeError: nothing fits (or the strategy asked for does not): one line with the
            numbers.

    Example:
        >>> plan = plan_job("density", 10**8, 2, max_memory=10**10, num_probes=10,
        ...                 num_steps=80)
        >>> plan.choice, plan.bound_bytes
        ('three-term', 1200000000)
    """
    if job not in STRATEGIES:
        raise ValueError(f"expected a job in {sorted(STRATEGIES)}, got {job!r}")
    names = STRATEGIES[job]
    if strategy != "auto" and strategy not in names:
        raise ValueError(f"expected a {job} strategy in {['auto', *names]}, got {strategy!r}")
    rows = []
    for name in names:
        need, hvps = _bytes(job, name, n, itemsize, settings)
        fits = need + hvp <= max_memory
        if name == "host-basis":
            fits = fits and host_basis_bytes(n, settings["k"], itemsize) <= host_memory
        rows.append(Strategy(name, need + hvp, hvps, fits))
    wanted = [r for r in rows if r.name == strategy] if strategy != "auto" else rows
    fitting = [r for r in wanted if r.fits and (strategy != "auto" or r.name not in _AUTO_SKIPS)]
    if not fitting and not refuse:
        return Plan(job, tuple(rows), "", 0, max_memory, n, itemsize)
    if not fitting:
        needs = ", ".join(f"{r.name} needs {_human(r.bytes)}" for r in wanted)
        raise RuntimeError(
            f"expected a strategy for {job} that fits in max_memory = {_human(max_memory)}, "
            f"got none: {needs} (n = {n}, {itemsize}-byte entries, HVP {_human(hvp)})"
        )
    chosen = fitting[0]
    return Plan(job, tuple(rows), chosen.name, chosen.bytes, max_memory, n, itemsize)


def plan_for(op, job: str, max_memory: int | None, strategy: str, **settings) -> Plan:
    """:func:`plan_job` for an operator: its size and dtype, :func:`hvp_bytes` (and for
    eigenpairs of a lower-precision operator, its float64 twin's copy of the weights), and
    ``max_memory`` defaulting to :func:`available_memory` on its device."""
    size = torch.empty((), dtype=op.dtype).element_size()
    cap = available_memory(op.device) if max_memory is None else int(max_memory)
    hvp = hvp_bytes(op)
    if job == "eigenpairs" and op.dtype != torch.float64:
        hvp += 8 * op.size + 8 * op.size  # the twin's weights, and its float64 product
    host = available_memory("cpu") if torch.device(op.device).type != "cpu" else 0
    return plan_job(job, op.size, size, max_memory=cap, hvp=hvp, strategy=strategy,
                    host_memory=host, **settings)  # fmt: skip


def plan_settings(plan: Plan, max_memory: int | None) -> dict:
    """What a result records of its plan: the strategy and its bound (and the cap when the
    caller set one; free memory is not recorded, so that results stay reproducible)."""
    found = {"strategy": plan.choice, "planned_bytes": plan.bound_bytes}
    return found if max_memory is None else {**found, "max_memory": int(max_memory)}
