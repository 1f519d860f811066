"""Channel spaces of a traced network, merged with union-find (used by
:mod:`landscape.alignment.spec`)."""

from __future__ import annotations

__all__ = ["Spaces"]


class Spaces:
    """Union-find over channel spaces; a fixed space is never permuted."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.fixed: list[bool] = []
        self.size: list[int | None] = []
        self.name: list[str] = []

    def new(self, name: str, size: int | None = None, fixed: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.fixed.append(fixed)
        self.size.append(size)
        self.name.append(name)
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int, where: str) -> int:
        i, j = self.find(i), self.find(j)
        if i == j:
            return i
        if i > j:
            i, j = j, i  # the older space names the group
        si, sj = self.size[i], self.size[j]
        if si is not None and sj is not None and si != sj and not (self.fixed[i] or self.fixed[j]):
            raise ValueError(
                f"cannot derive the permutation symmetry at {where}: expected channel spaces "
                f"of one size, got {si} and {sj}"
            )
        self.parent[j] = i
        self.fixed[i] = self.fixed[i] or self.fixed[j]
        self.size[i] = si if si is not None else sj
        return i

    def fix(self, i: int) -> None:
        self.fixed[self.find(i)] = True
