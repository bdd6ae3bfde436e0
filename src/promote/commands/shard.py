"""`promote check --shard I/N --partial OUT`: the flag checks and the write, kept out of commands/check.py.

The shard writes a partial state (``scale/partial.py``) and no report; ``promote merge`` renders it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from promote import console
from promote.errors import PromoteError


def write_partial(contract: str, stages: tuple[str, ...], shard: str | None, partial: Path | None, *,
                  engine: str, outputs: tuple, merge: Path | None, progress: bool | None) -> int:
    """`check --shard I/N --partial OUT`: one shard's partial state, no report; returns the exit code
    (0 written, 3 a kernel crashed and the partial records it)."""
    from promote.progress import default_mode
    from promote.run import CheckOptions, write_shard
    from promote.scale.split import parse_shard

    if shard is None or partial is None:
        raise PromoteError("--shard I/N and --partial OUT go together: the shard's state is written to OUT")
    if engine != "local" or outputs or merge is not None:
        raise PromoteError("--shard writes a partial state, not a report: drop --engine/--output/--merge and "
                           "render the report with `promote merge PARTIAL...`")
    index, count = parse_shard(shard)
    problem = _writable(partial)
    if problem:
        raise PromoteError(f"--partial {partial}: cannot write there: {problem}")
    options = CheckOptions(stages=stages, progress=default_mode(progress, stderr_is_tty=sys.stderr.isatty()))
    code = write_shard(contract, index, count, partial, options)
    console.message(f"promote: wrote shard {index}/{count} to {partial}" + (
        " (a kernel failed: the merged report will say so, exit 3)" if code else ""))
    return code


def _writable(path: Path) -> str | None:
    from promote.atomic import writable_problem

    return writable_problem(path)
