"""Guards on an output file: never one of the run's inputs, replaced only when landscape
wrote it, and held (HDF5's lock) for the whole run.

A run that writes a file holds it (its lock) from its start until its end
(:func:`hold_output`), also across the copies renamed into place that add its results,
so a second run on that file, ``--overwrite`` or not, is refused in one line instead of
replacing it under the first. ``--overwrite`` replaces only a landscape file
(:func:`check_replaceable`), and never a file the run reads (:func:`check_not_input`): a
checkpoint, a data set, directions.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

from .files import open_landscape_file, read_handle
from .locks import holding

__all__ = ["check_not_input", "check_replaceable", "hold_output", "is_landscape_file"]


def check_not_input(path: str | os.PathLike, inputs: Mapping[str, str | os.PathLike]) -> None:
    """Refuse an output that is one of the run's inputs (the same file, by inode).

    Args:
        path: the output file.
        inputs: ``{what: path}`` of every file the run reads, e.g. ``{"--checkpoint": ...}``.

    Raises:
        ValueError: ``path`` is one of ``inputs``.
    """
    for what, source in inputs.items():
        with contextlib.suppress(OSError):  # a missing file is no collision
            if os.path.samefile(path, source):
                raise ValueError(
                    f"the output {os.fspath(path)} is the input {what} {os.fspath(source)}; "
                    "expected an output file that the run does not read: choose another one"
                )


def is_landscape_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an HDF5 file whose root says landscape wrote it (any version)."""
    try:
        with read_handle(os.fspath(path)) as f:
            fmt = f.attrs.get("format")
    except OSError:  # not HDF5, or damaged
        return False
    fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
    return isinstance(fmt, str) and fmt.startswith("landscape.")


def check_replaceable(path: str | os.PathLike) -> None:
    """Refuse to replace (``--overwrite``) a file that landscape did not write: another
    HDF5 file (a user's data set), a checkpoint, a damaged file. An empty file is allowed
    (nothing is lost).

    Raises:
        ValueError: ``path`` exists, is not empty and is not a landscape file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path) or os.path.getsize(path) == 0 or is_landscape_file(path):
        return
    raise ValueError(
        f"{path} is not a file landscape wrote (not a landscape HDF5 file, or damaged), "
        "and --overwrite replaces only those; expected a landscape output file: choose "
        "another output path, or move the file away yourself"
    )


@contextlib.contextmanager
def hold_output(path: str | os.PathLike) -> Iterator[None]:
    """Hold the file at ``path`` (HDF5's lock, an exclusive ``flock``) during the block,
    so that no other process can write or replace it meanwhile: the landscape file there
    now, or the one this process creates there. This process still writes it, through a
    copy renamed into place that takes the hold over before the rename (:mod:`.locks`),
    and reads it by path.

    Raises:
        ValueError: another process has the file open for writing, or it is not a
            landscape file.
    """
    with holding(path):
        if os.path.isfile(path):
            open_landscape_file(path).close()  # one line for a foreign or damaged file
        yield
