"""Plain three-term Lanczos (no reorthogonalization): three vectors of ``n``, and the
Cullum-Willoughby test that tells the ghost copies it makes from eigenvalues."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import scipy.linalg
import torch

_SLACK = 1000  # copies and spurious values agree to this many units of round-off of ||T||


def _three_term(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    start: torch.Tensor,
    num_steps: int,
    *,
    visit: Callable[[int, torch.Tensor], None] | None = None,
    stop: Callable[[np.ndarray, np.ndarray], bool] | None = None,
    last_product: bool = True,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """At most ``num_steps`` steps of ``A v_j = b_{j-1} v_{j-1} + a_j v_j + b_j v_{j+1}``
    from ``start`` (normalized in place, and kept as ``v_1``: the caller's tensor is used).

    Holds three vectors: ``v_{j-1}``, ``v_j`` and the product that becomes ``v_{j+1}``
    (updated in place). ``visit(j, v_j)`` sees every basis vector before it is multiplied;
    ``stop(a, b)`` is asked after every step whether to end there. Without
    ``last_product`` the last step's vector is visited but not multiplied (a second pass
    that only needs the basis). Stops early, on an invariant subspace, when ``b_j`` is
    below ``1e-10`` (float64) or ``1e-5`` (float32) of the product's norm.

    Returns:
        ``(a, b, finite)``: ``a`` of length ``m`` (the steps taken), ``b`` of length ``m``
        (``b[-1]`` the norm left after the last product, 0 where none was made), and whether
        every product was finite.
    """
    tiny = 1e-10 if start.dtype == torch.float64 else 1e-5
    v, previous = start.div_(start.norm()), None
    alpha: list[float] = []
    beta: list[float] = []
    for j in range(num_steps):
        if visit is not None:
            visit(j, v)
        if not last_product and j == num_steps - 1:
            alpha.append(math.nan)
            beta.append(0.0)
            break
        w = matvec(v)
        if w.untyped_storage().data_ptr() == v.untyped_storage().data_ptr():
            w = w.clone()  # an operator that returns its input (the identity)
        scale = float(w.norm())
        if not math.isfinite(scale):
            return np.array(alpha), np.array(beta), False
        a = float(torch.dot(w, v))
        w.sub_(v, alpha=a)
        if previous is not None:
            w.sub_(previous, alpha=beta[-1])
        b = float(w.norm())
        alpha.append(a)
        beta.append(b)
        if not b > tiny * scale:
            beta[-1] = 0.0
            break
        if stop is not None and stop(np.array(alpha), np.array(beta)):
            break
        previous, v = v, w.div_(b)
    return np.array(alpha), np.array(beta), True


def _tridiagonal(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors (columns) of ``T = tridiag(b, a, b)``."""
    if len(alpha) == 1:
        return alpha.copy(), np.ones((1, 1))
    return scipy.linalg.eigh_tridiagonal(alpha, beta[: len(alpha) - 1])


def _margin(alpha: np.ndarray, beta: np.ndarray, eps: float) -> float:
    """How close two Ritz values must be to be copies of one eigenvalue: ``_SLACK`` units
    of round-off in ``||T||`` (the working dtype's ``eps``)."""
    norm = float(np.abs(alpha).max() + 2 * np.abs(beta).max()) if len(alpha) else 0.0
    return _SLACK * eps * max(norm, 1e-300)


def _ghosts(alpha: np.ndarray, beta: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The Cullum-Willoughby test (1985) on the Ritz values of ``T``: returns
    ``(keep, copies)``, boolean masks over the ascending Ritz values.

    Without reorthogonalization a converged eigenvalue reappears as ghost copies (Paige
    1971), and some Ritz values on their way to becoming copies are spurious. A value that
    appears once in ``T`` and is also an eigenvalue of ``T`` without its first row and
    column (``T-hat``, which the start vector cannot see) is spurious; copies within
    :func:`_margin` of each other count as one eigenvalue, kept at the copy with the
    smallest residual estimate. ``keep`` marks what is left; ``copies`` the ghosts dropped."""
    m = len(alpha)
    theta, vectors = _tridiagonal(alpha, beta)
    keep, copies = np.ones(m, dtype=bool), np.zeros(m, dtype=bool)
    if m < 2:
        return keep, copies
    margin = _margin(alpha, beta, eps)
    estimates = abs(beta[m - 1]) * np.abs(vectors[-1])
    hat = scipy.linalg.eigvalsh_tridiagonal(alpha[1:], beta[1 : m - 1]) if m > 2 else alpha[1:]
    group = [0]
    for i in range(1, m + 1):
        if i < m and theta[i] - theta[i - 1] <= margin:
            group.append(i)
            continue
        if len(group) == 1:
            j = group[0]
            if np.abs(hat - theta[j]).min() <= margin:
                keep[j] = False  # spurious: T-hat has it too
        else:
            best = group[int(np.argmin(estimates[group]))]
            for j in group:
                if j != best:
                    keep[j], copies[j] = False, True
        group = [i]
    return keep, copies
