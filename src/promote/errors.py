"""Typed errors that carry promote's exit codes (docs/cli.md, "Exit codes").

Raised deep, shown once at the CLI boundary: click prints ``format_message()`` to stderr and exits
with ``exit_code``. Messages must name the file, the key or line, and the fix; never a secret.
"""

from __future__ import annotations

import click

from promote.console import message

EXIT_PASS = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_COULD_NOT_EVALUATE = 3
EXIT_SIGINT = 130  # Ctrl-C: 128 + SIGINT, as a shell reports it
EXIT_SIGTERM = 143  # 128 + SIGTERM (a CI runner cancelling the job)


class PromoteError(click.ClickException):
    """Base class: a user-facing error with an exit code and no traceback."""

    exit_code = EXIT_USAGE

    def show(self, file=None) -> None:  # noqa: ANN001 - click's signature
        # Masks secrets and interpolated values; fenced in GitHub Actions (console.py).
        message(f"promote: error: {self.format_message()}", file=file)


class UsageError(PromoteError):
    """Bad invocation, bad contract or bad input file: the user must change something (exit 2)."""

    exit_code = EXIT_USAGE


class EvaluationError(PromoteError):
    """Inputs were valid but promote could not evaluate them (exit 3): a kernel crashed, a
    service was unreachable, data needed at run time is missing."""

    exit_code = EXIT_COULD_NOT_EVALUATE
