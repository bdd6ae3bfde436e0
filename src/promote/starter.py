"""`promote init`: a starter contract that runs as written.

Why the example's files come along: a starter whose `model.py`, weights and eval set do not exist
fails with five "not found" messages, and a newcomer learns nothing from it. So by default ``init``
copies the embedded example's tiny byte-level LM (``model.py``, ``weights.safetensors``,
``eval.jsonl``; 2 MB) beside the contract, whose paths name exactly those files: ``promote check``
on it passes (fp32 vs bf16 autocast), and the user then points the paths at their own model.
``--no-example`` writes the contract alone. Nothing is overwritten without ``--force``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from promote.atomic import write_text_atomic
from promote.errors import PromoteError
from promote.resources import data_dir, starter_dir

__all__ = ["STARTER_FILES", "write_starter"]

STARTER_FILES = ("model.py", "weights.safetensors", "eval.jsonl")
"""The example files the starter contract names, copied beside it."""


def write_starter(path: Path, *, example: bool = True, force: bool = False) -> list[Path]:
    """Write the starter contract at ``path`` (a directory: ``promote.yaml`` in it) and, with ``example``,
    the example model, weights and eval set beside it. Returns the files written, contract first.

    Raises PromoteError (exit 2) naming the first file that exists (unless ``force``) or cannot be written.
    """
    if path.is_dir():
        path = path / "promote.yaml"
    targets = [path] + ([path.parent / name for name in STARTER_FILES] if example else [])
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        hint = "pass --force to overwrite" + (", or --no-example to write the contract alone" if example else "")
        raise PromoteError(f"{existing[0]} already exists; {hint}")
    text = (data_dir("templates") / "starter-contract.yaml").read_text(encoding="utf-8")
    source = starter_dir(STARTER_FILES) if example else None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for target in targets[1:]:
            _copy_atomic(source / target.name, target)
        write_text_atomic(path, text)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
        raise PromoteError(f"cannot write {path}: {exc.strerror or exc}{where}") from None
    return targets


def _copy_atomic(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` in one step (a temporary file beside it, then rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
