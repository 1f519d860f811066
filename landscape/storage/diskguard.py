"""Writing HDF5 files so that a full disk is one line, never a crash.

When HDF5 itself meets a failed write (``ENOSPC``), its state for the file is broken:
h5py can no longer close the file's objects, every later release prints an ignored
exception and the interpreter crashes at exit. So HDF5 never writes to a disk file
here: every landscape file opened for writing is opened through a :class:`GuardedFile`
(h5py's ``fileobj`` driver), which does the writes itself. Its first failed write is
kept and the writes after it are held in memory, so HDF5 always succeeds and closes
cleanly; :class:`GuardedH5File`'s ``flush`` and ``close`` then raise the one-line error.

Free space is checked against a file's planned size (:func:`check_space`) before any
work, so a disk that is already full is refused at once; the guard covers a disk that
fills up while the file is written.
"""

from __future__ import annotations

import errno
import os
import re
from typing import Any

import h5py

from .locks import covers, flock, held_error

__all__ = [
    "DiskFullError",
    "GuardedFile",
    "GuardedH5File",
    "check_space",
    "free_bytes",
    "write_error",
]

#: Bytes a landscape file takes beyond its arrays: superblock, object headers, heaps,
#: attributes (measured: under 20 KiB for a surface of two metrics and 100 tensors).
OVERHEAD_BYTES = 64 * 1024
#: Bytes per dataset beyond its values (object header, attributes, links).
PER_DATASET_BYTES = 1024
#: Writes held in memory after a failure are kept only up to this size: HDF5 reads back
#: its metadata (small blocks), never the values it wrote (large ones).
_KEPT_WRITE_BYTES = 1 << 20


class DiskFullError(RuntimeError):
    """The disk (or the user's quota) is full; the command line exits with status 1."""

    exit_status = 1


def errno_of(err: BaseException) -> int | None:
    """The errno of an error, also when HDF5 gives it only in the message."""
    code = getattr(err, "errno", None)
    if code is not None:
        return code
    found = re.search(r"errno = (\d+)", str(err))
    return int(found.group(1)) if found else None


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` says the disk or the quota is full."""
    return errno_of(err) in (errno.ENOSPC, errno.EDQUOT)


def write_error(err: Exception, path: str | os.PathLike) -> Exception:
    """A one-line error for an OSError met while writing ``path``: a full disk, a folder
    that cannot be written, or ``err`` itself.

    Example:
        >>> write_error(OSError(errno.ENOSPC, "No space left on device"), "s.h5").args[0][:40]
        'no space left on device writing s.h5: fr'
    """
    path = os.fspath(path)
    code = errno_of(err)
    if is_disk_full(err):
        return disk_full(path)
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        folder = os.path.dirname(os.path.abspath(path))
        return PermissionError(
            f"cannot write {path}: {os.strerror(code).lower()} in {folder}; choose another "
            "output path"
        )
    return err


def disk_full(path: str, detail: str = "") -> DiskFullError:
    detail = detail or "free some space"
    return DiskFullError(
        f"no space left on device writing {path}: {detail}, then run the same command "
        "again to resume"
    )


def free_bytes(path: str | os.PathLike) -> int:
    """Bytes free to this user in the folder of ``path``."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize


def check_space(path: str | os.PathLike, num_bytes: int) -> None:
    """Refuse, before writing, a file of about ``num_bytes`` that the disk cannot hold.

    Raises:
        DiskFullError: fewer than ``num_bytes`` are free in the folder of ``path``.
    """
    free = free_bytes(path)
    if num_bytes > free:
        raise disk_full(
            os.fspath(path),
            f"it needs about {_size(num_bytes)}, {_size(free)} free; free some space",
        )


def _size(num_bytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if num_bytes < 1024 or unit == "GiB":
            return f"{num_bytes:.0f} {unit}" if unit == "bytes" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    raise AssertionError("unreachable")


def planned_bytes(arrays: Any) -> int:
    """The planned size of a file holding ``arrays`` (numpy arrays or tensors)."""
    total = OVERHEAD_BYTES
    for array in arrays:
        total += int(getattr(array, "nbytes", 0) or 0) + PER_DATASET_BYTES
    return total


class GuardedFile:
    """A file for h5py's ``fileobj`` driver that never reports a failed write to HDF5.

    The file is locked (``flock``, exclusive, as HDF5 locks a file it writes) for as
    long as it is open, unless this process already holds it (:mod:`.locks`). After the
    first failed write (kept in :attr:`error`), writes are held in memory and served back
    to reads, so HDF5 can finish and close.

    Raises:
        ValueError: another process holds the file for writing (from the constructor).
    """

    def __init__(self, path: str | os.PathLike, *, create: bool = False):
        self.path = os.fspath(path)
        flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0)
        self._fd = os.open(self.path, flags, 0o666)
        if not covers(self._fd):  # a hold of this process covers its own writer
            try:
                flock(self._fd)
            except BlockingIOError:
                os.close(self._fd)
                raise held_error(self.path) from None
        self.error: OSError | None = None
        self._pos = 0
        self._size = os.fstat(self._fd).st_size
        self._kept: list[tuple[int, bytes]] = []

    def fileno(self) -> int:
        return self._fd

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        if self.error is None:
            try:
                done = 0
                while done < size:
                    done += os.pwrite(self._fd, view[done:], self._pos + done)
            except OSError as err:
                self.error = err
        if self.error is not None and size <= _KEPT_WRITE_BYTES:
            self._kept.append((self._pos, bytes(view)))
        self._pos += size
        self._size = max(self._size, self._pos)
        return size

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = max(self._size - self._pos, 0)
        size = min(size, max(self._size - self._pos, 0))
        data = bytearray(os.pread(self._fd, size, self._pos))
        data.extend(bytes(size - len(data)))  # held in memory, past the end on disk
        for offset, blob in self._kept:
            start, stop = max(offset, self._pos), min(offset + len(blob), self._pos + size)
            if start < stop:
                data[start - self._pos : stop - self._pos] = blob[start - offset : stop - offset]
        self._pos += size
        return bytes(data)

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self._fd, size)
            except OSError as err:
                self.error = err
        self._size = size
        return size

    def flush(self) -> None:
        """Nothing to do: every write went to the operating system at once."""

    def close(self) -> None:
        """Close the file (and release its lock)."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class GuardedH5File(h5py.File):
    """An h5py file written through a :class:`GuardedFile`; ``flush`` and ``close``
    raise :class:`DiskFullError` (or the OSError met) once a write has failed.

    Args:
        path: the file.
        mode: ``"w"`` (create or truncate) or ``"r+"``.
        report_as: the path named in errors (the final name of a temporary file).
    """

    def __init__(self, path: str | os.PathLike, mode: str, *, report_as: str | None = None):
        if mode not in ("w", "r+"):
            raise ValueError(f"expected mode 'w' or 'r+', got {mode!r}")
        guard = GuardedFile(path, create=mode == "w")
        try:
            super().__init__(guard, mode)
        except BaseException:
            guard.close()
            raise
        self._guard = guard
        self._report_as = report_as or os.fspath(path)

    @property
    def failed(self) -> OSError | None:
        """The first failed write, if any."""
        return self._guard.error

    def check(self) -> None:
        """Raise the one-line error of the first failed write, if any."""
        err = self._guard.error
        if err is None:
            return
        raise write_error(err, self._report_as)

    def flush(self) -> None:
        super().flush()
        self.check()

    def close(self) -> None:
        self.discard()
        self.check()

    def discard(self) -> None:
        """Close without raising (the caller reports the failure or removes the file)."""
        try:
            if self.id.valid:
                super().close()
        finally:
            self._guard.close()
