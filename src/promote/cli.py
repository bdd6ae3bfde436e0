"""The `promote` command line: parse → build → run → exit code (docs/cli.md).

Exit codes: 0 pass (or warn), 1 gate failed, 2 usage or contract error, 3 could not evaluate,
130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
Results go to stdout, logs and errors to stderr. Heavy imports (torch, onnxruntime, the stages)
happen inside the commands that need them, so `promote --help` and `promote validate` start fast.
"""

from __future__ import annotations

import os
import signal
import sys

import click

from promote import __version__, console
from promote.commands.options import EXIT_CODES_HELP
from promote.errors import EXIT_COULD_NOT_EVALUATE

__all__ = ["cli", "main"]


class _Group(click.Group):
    """click turns a KeyboardInterrupt into "Aborted!" and exit 1, which reads as a failed gate;
    promote reports it as an interruption (exit 130) instead."""

    def invoke(self, ctx: click.Context):  # noqa: ANN201 - click's signature
        from promote.signals import Interrupted

        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted(signal.SIGINT) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, "--version", prog_name="promote")
def cli() -> None:
    """Check an inference kernel against its reference kernel under a kernel contract."""
    from promote.redact import reset

    reset()  # one invocation, one set of masked values (matters when tests invoke many in one process)
    console.set_github(None)


def _add_commands() -> None:
    """Each command lives in its own module (commands/, calibrate/command.py); click only at import,
    the work is imported lazily inside each command."""
    from promote.calibrate.command import calibrate_command
    from promote.commands.bounds import bounds
    from promote.commands.check import check, merge
    from promote.commands.comment import comment
    from promote.commands.render import render
    from promote.commands.starter import init, schema
    from promote.commands.validate import validate
    from promote.commands.watch import serve, watch

    for command in (check, merge, validate, comment, render, bounds, schema, init, calibrate_command, watch, serve):
        cli.add_command(command)


_add_commands()


def main() -> None:
    """Console-script entry: click handles PromoteError (with its exit code); anything else is a bug,
    reported as exit 3 ("could not evaluate") rather than exit 1, which would read as a failed gate.
    SIGINT/SIGTERM stop the run with 130/143 (promote/signals.py tells them from user code's own
    KeyboardInterrupt/SystemExit, which are evaluation errors)."""
    from promote.heap import own_process
    from promote.signals import Interrupted, exit_now, finish, handling, stuck_threads

    own_process()  # this process runs one command: loading kernels may freeze what they load (promote/heap.py)
    try:
        with handling():
            cli.main(prog_name="promote")
    except SystemExit as exc:  # click's way out of every finished command: end it without the teardown
        finish(exc.code)
    except Interrupted as exc:
        console.message(f"\npromote: interrupted by {exc}; stopped without a verdict (exit {exc.exit_code})")
        if stuck_threads():  # a worker blocked on a server: exiting normally would join it (forever)
            exit_now(exc.exit_code)
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the one boundary for unexpected errors
        console.message(f"promote: internal error: {type(exc).__name__}: {exc} (please report this bug; "
                        "set PROMOTE_DEBUG=1 for a traceback)")
        if os.environ.get("PROMOTE_DEBUG"):
            raise
        sys.exit(EXIT_COULD_NOT_EVALUATE)


if __name__ == "__main__":
    main()
