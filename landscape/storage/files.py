"""Landscape HDF5 files: create (atomically), open and validate, stamp, result groups.

Every landscape file carries ``format`` (``"landscape.surface"``, ``"landscape.results"``,
``"landscape.compare"``, ...) and ``format_version`` on its root; :func:`open_landscape_file`
refuses anything else with one line saying what is wrong. A new file is written under a
temporary name in the same folder and renamed into place when complete, so a reader (or
a rerun) never finds a half-created file under the real name; the rename never replaces
a file that another process has open for writing (an ``flock`` on it). An existing file
is changed the same way, through a copy (:func:`rewrite_file`), so a reader sees each
result whole or not at all. HDF5 never writes to the disk itself
(:mod:`~landscape.storage.diskguard`): a full disk, a folder that cannot be written and a
file held by another run are each reported in one line.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import glob
import os
import re
import shutil
from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np
import torch

from .._version import __version__
from . import locks
from .diskguard import GuardedH5File, check_space, errno_of, write_error

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "PROVENANCE_ATTRS",
    "STAMP_ATTRS",
    "check_output",
    "create_file",
    "open_landscape_file",
    "rewrite_file",
    "stamp_root",
    "write_error",
]

FORMAT = "landscape.surface"
FORMAT_VERSION = 1
#: Root attributes that say which file this is, not what was computed.
STAMP_ATTRS = ("format", "format_version", "landscape_version", "torch_version", "created")
#: Where version 0.2 wrote result groups before moving them into place.
STAGING = ".partial"
#: Attributes of a result group that say where it came from; ``describe_file`` prints them.
PROVENANCE_ATTRS = (
    "model",
    "checkpoint_path",
    "checkpoint_sha256",
    "data",
    "data_sha256",
    "num_examples",
    "loss_name",
    "train_mode",
    "precision",
)


def stamp_root(f: h5py.File, fmt: str = FORMAT) -> None:
    """Write the attributes every landscape file carries on its root."""
    f.attrs["format"] = fmt
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["landscape_version"] = __version__
    f.attrs["torch_version"] = str(torch.__version__)
    f.attrs["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _held(path: str) -> ValueError:
    return locks.held_error(path)


def check_output(path: str | os.PathLike) -> None:
    """Refuse, before any work, an output path that cannot be written: a directory, a
    missing or read-only folder, or a file that another process has open for writing.
    Temporary files left by creations of ``path`` that were killed are removed.

    Raises:
        ValueError: ``path`` is a directory or is held by a writer.
        FileNotFoundError: its folder does not exist.
        PermissionError: its folder cannot be written.
    """
    path = os.fspath(path)
    if not path:
        raise ValueError("the output file name is empty")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory; give a file name for the output")
    folder, name = os.path.split(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"no such folder for the output: {folder}")
    try:
        with open(os.path.join(folder, f".{name}.{os.getpid()}.probe"), "wb") as probe:
            os.remove(probe.name)
    except OSError as err:
        raise write_error(err, path) from None
    with _no_writer(path):
        pass
    _remove_stale_temporaries(folder, name)


@contextlib.contextmanager
def _no_writer(path: str) -> Iterator[None]:
    """Hold a shared ``flock`` on the file at ``path`` (if any): refused while a writer
    holds it, and no writer can open it until the block ends."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - held for the block
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        yield
        return
    with handle:
        if not locks.covers(handle.fileno()):  # this process's own hold lets it write
            try:
                locks.flock(handle, shared=True)
            except BlockingIOError:
                raise _held(path) from None
        yield


def _remove_stale_temporaries(folder: str, name: str) -> None:
    """Remove the temporary files of creations of ``name`` killed before their rename."""
    for stale in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.*.tmp")):
        pid = stale[: -len(".tmp")].rpartition(".")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                os.remove(stale)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


@contextlib.contextmanager
def create_file(
    path: str | os.PathLike,
    fmt: str | None = FORMAT,
    *,
    keep_open: bool = False,
    size: int = 0,
) -> Iterator[h5py.File]:
    """A new stamped landscape file, written under a temporary name and renamed to ``path``
    when the block ends without error (replacing any file there, unless another process
    has it open for writing); on error nothing appears. With ``keep_open`` the file stays
    open for writing after the rename (holding its lock): the caller closes it. ``size``
    is the file's planned size in bytes: a disk with less free space is refused before
    anything is written. ``fmt=None`` leaves the root unstamped (a foreign format).

    Raises:
        ValueError: ``path`` is a directory or a file held by a writer.
        FileNotFoundError, PermissionError: the folder is missing or cannot be written.
        DiskFullError: the disk is full, or too full for ``size`` bytes.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with create_file(f"{tmp}/r.h5", "landscape.results") as f:
        ...         f["values"] = np.arange(3.0)
        ...     with open_landscape_file(f"{tmp}/r.h5") as f:
        ...         f["values"][()].tolist()
        [0.0, 1.0, 2.0]
    """
    path = os.fspath(path)
    check_output(path)
    check_space(path, size)
    folder, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    f = None
    published = False
    try:
        try:
            f = GuardedH5File(temporary, "w", report_as=path)
            if fmt is not None:
                stamp_root(f, fmt)
            yield f
            if keep_open:  # the open file's lock holds it after the rename
                f.flush()
                with _no_writer(path):
                    os.replace(temporary, path)
            else:
                f.close()  # raises if the last writes failed (the file is then removed)
                with _no_writer(path):
                    locks.replace(temporary, path)  # keeps this process's hold of path
            published = True
        except OSError as err:
            raise write_error(err, path) from None
    finally:
        if f is not None and not published:
            f.discard()  # the failure is reported above
        if not published and os.path.exists(temporary):
            os.remove(temporary)


@contextlib.contextmanager
def rewrite_file(path: str | os.PathLike, *, size: int = 0) -> Iterator[h5py.File]:
    """The landscape file at ``path`` open for changes, as a copy under a temporary name
    that replaces ``path`` when the block ends without error: a reader, a kill or a full
    disk sees the file before or after the whole change, never part of it. Other
    writers are refused until the block ends. ``size``: the bytes the change adds.

    Raises:
        ValueError: the file is foreign, damaged or held by another writer.
        DiskFullError: the disk is too full for a copy of the file and ``size`` bytes.
    """
    path = os.fspath(path)
    open_landscape_file(path).close()  # one line for a foreign or damaged file
    folder, name = os.path.split(os.path.abspath(path))
    _remove_stale_temporaries(folder, name)
    temporary = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    f = None
    published = False
    with open(path, "rb") as original:
        if not locks.covers(original.fileno()):  # else this process holds it for the run
            try:
                locks.flock(original)
            except BlockingIOError:
                raise _held(path) from None
        check_space(path, os.fstat(original.fileno()).st_size + size)
        try:
            try:
                with open(temporary, "wb") as copy:
                    shutil.copyfileobj(original, copy, 1 << 20)
                    shutil.copymode(path, temporary)
                f = GuardedH5File(temporary, "r+", report_as=path)
                yield f
                f.close()
                locks.replace(temporary, path)  # a hold of path moves to the new file
                published = True
            except OSError as err:
                raise write_error(err, path) from None
        finally:
            if f is not None and not published:
                f.discard()
            if not published and os.path.exists(temporary):
                os.remove(temporary)


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _open_error(path: str, mode: str, err: OSError) -> Exception:
    """One line saying why the file at ``path`` could not be opened."""
    if "unable to lock" in str(err):
        return _held(path)
    if mode != "r" and errno_of(err) in (errno.EACCES, errno.EPERM, errno.EROFS):
        return write_error(err, path)
    advice = (  # never advise deleting what may be the user's checkpoint or data
        "landscape reads the .h5 files it writes"
        if mode == "r"
        else "choose another output path, or move the file away (--overwrite replaces only "
        "landscape files it can read)"
    )
    if os.path.getsize(path) == 0:
        return ValueError(f"{path} is an empty file (its creation was cut short?); {advice}")
    found = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", str(err))
    if found:
        return ValueError(
            f"{path} is a truncated HDF5 file ({found.group(1)} of {found.group(2)} bytes; "
            f"an interrupted copy?); {advice}"
        )
    return ValueError(f"{path} is not a readable HDF5 file (not HDF5, or damaged): {err}; {advice}")


def read_handle(path: str) -> h5py.File:
    """``path`` open for reading without taking its lock, so `landscape info` works while a
    run writes; with the lock where this process holds the file open for writing (HDF5
    shares one open file in a process, and refuses other locking flags)."""
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as err:
        if "locking flag values don't match" not in str(err):
            raise
        return h5py.File(path, "r")


def open_landscape_file(path: str | os.PathLike, mode: str = "r") -> h5py.File:
    """Open an existing landscape HDF5 file, refusing truncated, foreign or newer files.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not HDF5, is damaged, is held by a writer (``mode="a"``),
            is not a landscape file, or was written by a newer format version.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory, not a landscape HDF5 file")
    try:  # a full disk must never reach HDF5 (see landscape.storage.diskguard)
        f = read_handle(path) if mode == "r" else GuardedH5File(path, "r+")
    except OSError as err:
        raise _open_error(path, mode, err) from None
    fmt = _text(f.attrs.get("format"))
    version = f.attrs.get("format_version")
    problem = None
    close = f.discard if isinstance(f, GuardedH5File) else f.close
    readable = isinstance(fmt, str) and fmt.isascii() and fmt.isprintable()
    if not readable or not fmt.startswith("landscape."):
        problem = f"{path} is an HDF5 file but not a landscape file (format attr: {fmt!r})"
    elif not isinstance(version, (int, np.integer)) or isinstance(version, (bool, np.bool_)):
        problem = f"{path} has no integer format_version (got {_text(version)!r}); damaged?"
    elif version > FORMAT_VERSION:
        problem = (
            f"{path} has format_version {int(version)}, newer than the {FORMAT_VERSION} this "
            f"landscape {__version__} reads; upgrade landscape to read it"
        )
    if problem is not None:
        close()
        raise ValueError(problem)
    return f
