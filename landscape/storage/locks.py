"""This process's holds on its output files: an exclusive ``flock`` kept for a whole run.

A run holds its output (:func:`holding`) so that no other process writes or replaces it
meanwhile; HDF5 takes the same lock for writing, so another run, ``--overwrite`` or not,
is refused in one line. Results are added to a file through a copy renamed into place
(:func:`~landscape.storage.files.rewrite_file`), which would leave the lock on the old
file: :func:`replace` locks the copy *before* the rename and moves the hold to it, so the
file under the output's name is held at every moment. This process's own writers and
readers pass a hold of its own (:func:`covers`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import IO

try:
    import fcntl
except ImportError:  # Windows: no flock; HDF5's own file locking still refuses a 2nd writer
    fcntl = None  # type: ignore[assignment]  # a module, or None off POSIX

__all__ = ["covers", "flock", "holding", "replace"]

#: ``{real path: descriptor holding its lock}``; ``None`` while no file exists there yet.
_HELD: dict[str, int | None] = {}


def held_error(path: str | os.PathLike) -> ValueError:
    return ValueError(
        f"{os.fspath(path)} is open for writing by another process (a run still going?); "
        "wait for it to finish or stop it"
    )


def _key(path: str | os.PathLike) -> str:
    return os.path.realpath(os.fspath(path))


def covers(fd: int) -> bool:
    """Whether this process holds the file open at descriptor ``fd`` (same inode)."""
    stat = os.fstat(fd)
    for held in _HELD.values():
        if held is not None:
            other = os.fstat(held)
            if (other.st_dev, other.st_ino) == (stat.st_dev, stat.st_ino):
                return True
    return False


def flock(fd: int | IO, *, shared: bool = False) -> None:
    """Lock the open file ``fd`` (a descriptor or a file object) without waiting; where
    ``fcntl`` is missing (Windows) this does nothing.

    Raises:
        BlockingIOError: another process holds a conflicting lock.
    """
    if fcntl is not None:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)


def _lock(fd: int, path: str | os.PathLike) -> None:
    try:
        flock(fd)
    except BlockingIOError:
        raise held_error(path) from None


@contextlib.contextmanager
def holding(path: str | os.PathLike) -> Iterator[None]:
    """Hold the file at ``path`` for the block: the file there now, or the first one this
    process puts there (:func:`replace`); a nested hold of the same path does nothing.

    Raises:
        ValueError: another process has the file open for writing.
    """
    key = _key(path)
    if key in _HELD:
        yield
        return
    try:
        fd: int | None = os.open(key, os.O_RDONLY)
    except FileNotFoundError:
        fd = None
    if fd is not None:
        try:
            _lock(fd, path)
        except BaseException:
            os.close(fd)
            raise
    _HELD[key] = fd
    try:
        yield
    finally:
        fd = _HELD.pop(key)
        if fd is not None:
            os.close(fd)


def replace(temporary: str, path: str | os.PathLike) -> None:
    """``os.replace(temporary, path)``, with ``temporary`` locked before the rename: no
    other writer gets the new file in between, and a hold of ``path`` moves to it.
    ``temporary`` must not be open for writing (its lock would refuse this one)."""
    fd = os.open(temporary, os.O_RDONLY)
    try:
        _lock(fd, temporary)
        os.replace(temporary, path)
    except BaseException:
        os.close(fd)
        raise
    key = _key(path)
    released: int | None = fd
    if key in _HELD:
        released, _HELD[key] = _HELD[key], fd
    if released is not None:
        os.close(released)
