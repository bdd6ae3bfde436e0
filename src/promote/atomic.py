"""Files promote writes appear whole or not at all, and a bad path is found before any kernel runs.

A report is what a gate leaves behind: a reader polling for it, or the next ``--merge``, must never
see half a file, and a run killed mid-write (SIGTERM from a cancelled job) must leave the previous
report intact rather than a 0-byte file. So every file is written to a temporary file in the same
directory, flushed to disk, and renamed over the target (atomic on POSIX and Windows).

Appends to files the runner owns (``$GITHUB_OUTPUT``, ``$GITHUB_STEP_SUMMARY``) are not written here:
they must stay appends (github/workflow.py).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def _new_file_mode() -> int:
    """What ``open(path, "w")`` would give a new file: 0o666 less the umask (mkstemp makes 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_text_atomic(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` in one step; on any failure the old file is untouched and no
    temporary file is left behind. The parent directory must exist."""
    target = Path(path)
    try:
        mode = target.stat().st_mode & 0o7777
    except OSError:
        mode = _new_file_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding=encoding) as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:  # a signal mid-write too: the temporary file must not linger
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); Windows cannot open a directory, nothing to do there."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def writable_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` could not be written (None if it can): checked before any work is done, so a
    typo in ``--output`` costs nothing. Creates missing parent directories, as the write would, and
    probes the directory with a temporary file (permission bits alone say nothing for root or a
    read-only file system)."""
    target = Path(path)
    if target.is_dir():
        return f"{target} is a directory; give a file path"
    for ancestor in target.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                return f"{ancestor} is a file, not a directory"
            break
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=target.parent)
    except OSError as exc:
        return f"cannot create a file in {target.parent}: {exc.strerror or exc}"
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return None
