"""One batch's logits written by a worker process and read by promote without a copy (`kind: vllm`).

Why files and not ``multiprocessing.shared_memory``: the worker runs another interpreter (the vLLM
venv's), and a segment opened there is registered with that interpreter's resource tracker, which
unlinks it when the worker exits. A plain file in a private folder (mode 0700) on ``/dev/shm`` (RAM;
the temporary directory where there is none) has one owner, promote: it creates the file at the
batch's exact size, fully allocated (so a full ``/dev/shm`` is an error naming the size here,
not a SIGBUS in the worker), the worker maps it and writes, and promote maps it copy-on-write and
unlinks it at once. The array promote hands on is that mapping: no copy, writable (a write copies
the page), freed with the array; a crash leaves only the folder, which :meth:`close` removes.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import mmap
import os
import shutil
import stat
import tempfile
from pathlib import Path

import numpy as np

from promote.errors import EvaluationError

FLOAT32 = 4


def shared_root() -> str | None:
    """``/dev/shm`` when it is a writable folder (Linux), else None: the system temporary directory."""
    root = "/dev/shm"
    return root if os.path.isdir(root) and os.access(root, os.W_OK | os.X_OK) else None


class SharedLogits:
    """Files of float32 [B, T, V] in one private folder, one per batch."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.folder = Path(tempfile.mkdtemp(prefix="promote-logits-", dir=shared_root()))
        self._count = itertools.count()

    def allocate(self, shape: tuple[int, int, int]) -> Path:
        """A new file of exactly ``shape`` float32 zeros, allocated now."""
        size = int(np.prod(shape)) * FLOAT32
        path = self.folder / f"batch-{next(self._count)}.f32"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, size)
            else:  # pragma: no cover - not Linux
                os.ftruncate(fd, size)
        except OSError as exc:
            path.unlink(missing_ok=True)
            full = exc.errno in (errno.ENOSPC, errno.EFBIG, errno.ENOMEM)
            raise EvaluationError(
                f"{self.label}: cannot allocate {size / 2**20:.0f} MiB of shared memory in {self.folder.parent} for "
                f"one batch's logits {list(shape)} (float32): {exc.strerror or exc}"
                + ("; lower the kernel's `batch_size` (memory is batch × longest sample × vocabulary × 4 bytes)"
                   if full else "")) from None
        finally:
            os.close(fd)
        return path

    def take(self, path: Path, shape: tuple[int, int, int]) -> np.ndarray:
        """The file as a float32 array ``shape`` (a private, copy-on-write mapping); the file is unlinked."""
        size = int(np.prod(shape)) * FLOAT32
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode) or info.st_size != size:
                    raise EvaluationError(f"{self.label}: the shared logits file {path} is {info.st_size} bytes, not "
                                          f"{size} ({list(shape)} float32): it was changed during the batch")
                mapping = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
            finally:
                os.close(fd)
        except OSError as exc:
            raise EvaluationError(f"{self.label}: cannot read the shared logits file {path}: "
                                  f"{exc.strerror or exc}") from None
        finally:
            path.unlink(missing_ok=True)
        return np.frombuffer(mapping, dtype=np.float32).reshape(shape)

    def discard(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            shutil.rmtree(self.folder)
