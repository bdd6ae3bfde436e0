"""Reading an input file promote did not write: a regular file, read up to a stated size, or an OSError.

Partials, JSON reports, eval sets and metric snapshots may come from another machine or a
downloaded artifact. A FIFO would block the open (and ``validate``) forever, ``/dev/zero`` or a
multi-GB file would exhaust memory before any check ran. So the file is opened non-blocking, must
be a regular file (``fstat`` on the opened descriptor, so a path swapped after a ``stat`` cannot
slip through), and is read only up to ``limit`` bytes. The errors are ``OSError``s whose
``strerror`` is the sentence to show, so callers' existing ``except OSError`` messages name the
file and the reason.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

MIB = 1024 * 1024


class NotRegularFile(OSError):
    """The path is a FIFO, a device, a socket or a directory: promote reads regular files only."""


class FileTooLarge(OSError):
    """The file is larger than the documented limit for its kind."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def not_regular(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is when it exists but is not a regular file (``a FIFO (named pipe)``), else None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) else _kind(mode)


def file_problem(path: Path, shown: str, what: str) -> str | None:
    """None when ``path`` is a regular file, else why not, for a contract check (``what`` `shown` ...)."""
    if path.is_file():
        return None
    other = not_regular(path)
    if other:
        return f"{what} `{shown}` is {other}, not a regular file; give a file"
    return f"{what} `{shown}` not found (looked for {path}); paths are relative to the contract file"


def size_text(limit: int) -> str:
    return f"{limit / MIB:g} MiB" if limit >= MIB else f"{limit} bytes"


def open_regular(path: str | os.PathLike[str], limit: int | None = None) -> int:
    """An open read-only descriptor of ``path``, checked to be a regular file (and at most ``limit``
    bytes when given); the caller closes it."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            what = _kind(info.st_mode)
            raise NotRegularFile(errno.EINVAL, f"{what}, not a regular file: give a file", str(path))
        if limit is not None and info.st_size > limit:
            raise FileTooLarge(errno.EFBIG, f"{info.st_size} bytes, over the {size_text(limit)} limit for this "
                                            "kind of file", str(path))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them (a file that grows past the
    limit while read is refused too)."""
    fd = open_regular(path, limit)
    with os.fdopen(fd, "rb") as handle:
        # read(n) allocates n bytes up front: ask for the file's size, then for what it grew by.
        data = bytearray(handle.read(min(os.fstat(fd).st_size, limit) + 1))
        while len(data) <= limit:
            block = handle.read(min(MIB, limit + 1 - len(data)))
            if not block:
                break
            data += block
    if len(data) > limit:
        raise FileTooLarge(errno.EFBIG, f"over the {size_text(limit)} limit for this kind of file", str(path))
    return bytes(data)


def check_regular(path: str | os.PathLike[str]) -> None:
    """Raise NotRegularFile (or the OSError of the open) unless ``path`` is a readable regular file."""
    os.close(open_regular(Path(path)))
