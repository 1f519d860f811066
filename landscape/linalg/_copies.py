"""The final check of the Lanczos eigensolver for copies a single vector cannot see."""

from __future__ import annotations

import numpy as np

from ._krylov import _Lanczos

_CHECK_STEPS, _CHECK_MAX = 3, 12  # products of the final check, at least and at most
_CLOSE = 3  # wanted values within _CLOSE tol ||A|| of each other are a cluster
_PACE = 2  # a check goes on while this many more products at the last pace reach the wanted


def _cluster(values: np.ndarray, margin: float) -> int:
    """Members of the largest group of values, each within ``margin`` of the next."""
    best = run = 1
    for close in np.diff(np.sort(values)) <= margin:
        run = run + 1 if close else 1
        best = max(best, run)
    return best


def _approaching(which: str, wanted: np.ndarray, mu: np.ndarray, before: np.ndarray) -> bool:
    """Whether Ritz values ``mu`` (``before``: one product earlier) reach past the wanted
    values ``wanted`` (wanted order) within two more products at the last one's pace."""
    k = len(wanted)
    if which == "LM":
        ends = [(np.abs, np.abs(wanted).min())]
    else:
        low = {"LA": 0, "SA": k, "BE": k // 2}[which]
        ends = [(lambda t: t, wanted[: k - low].min())] if low < k else []
        ends += [(lambda t: -t, -wanted[k - low :].max())] if low else []
    for score, frontier in ends:
        now, then = score(mu).max(), score(before).max()
        if now + _PACE * (now - then) >= frontier:
            return True
    return False


class _Check:
    """The final check for missed copies: a random row orthogonal to the basis, and its
    Krylov space grown until its own Ritz values are not on their way into the wanted set
    (at least ``_CHECK_STEPS`` products, ``_CHECK_MAX`` where copies were found already,
    and at most ``_CHECK_MAX`` or what the basis holds)."""

    def __init__(self, lanczos: _Lanczos, values: np.ndarray, capacity: int, margin: float):
        self.first, self.values, self.before, self.steps = lanczos.size - 1, values, None, 0
        self.capacity = capacity
        self.least = self.least_for(values, margin)

    @staticmethod
    def least_for(values: np.ndarray, margin: float) -> int:
        """Products a check takes at least: more where wanted values are within
        ``_CLOSE * margin`` of each other (copies or a cluster)."""
        close = len(values) > 1 and np.diff(np.sort(values)).min() <= _CLOSE * margin
        return _CHECK_MAX if close else _CHECK_STEPS

    def passed(self, lanczos: _Lanczos, values: np.ndarray, margin: float, which: str):
        """After each product: True (nothing found), False (the wanted values moved), or
        None (not known yet)."""
        self.steps += 1
        if np.abs(values - self.values).max() > margin:
            return False
        rows = [i for i in range(self.first, lanczos.size) if lanczos.done[i]]
        upper = np.triu(lanczos.T[np.ix_(rows, rows)])
        mu = np.linalg.eigvalsh(upper + np.triu(upper, 1).T)
        before, self.before = self.before, mu
        if self.steps < self.least and lanczos.size < self.capacity:
            return None
        full = self.steps >= _CHECK_MAX or lanczos.size >= self.capacity
        return True if full or not _approaching(which, values, mu, before) else None
