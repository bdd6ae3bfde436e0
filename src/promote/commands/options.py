"""Click pieces every command shares: the exit-code epilog, finite float flags and the report options
(--format, --output, --fail-on), so each command module declares its flags the same way."""

from __future__ import annotations

import math

import click

from promote.output_spec import OutputSpec
from promote.policy import FAIL_ON
from promote.report.formats import FORMATS

EXIT_CODES_HELP = """\b
Exit codes:
  0  pass (warnings too, unless --fail-on warn)
  1  gate failed: a clause was violated and the policy blocks
  2  usage or contract error (bad flag, invalid contract, bad data file)
  3  could not evaluate (a kernel crashed or exited, a stage is unavailable)
  130  interrupted by Ctrl-C (SIGINT); no verdict
  143  terminated by SIGTERM (e.g. a cancelled CI job); no verdict"""


class FiniteFloat(click.FloatRange):
    """A float flag that must be a finite number: click's FLOAT takes `nan` and `inf`, which no bound
    can be computed from (`promote bounds --drift nan` crashed)."""

    name = "finite float"

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number; give a number such as 0.1 or 1e-3", param, ctx)
        return number


def report_options(command):  # noqa: ANN001, ANN202 - a click decorator
    """--format, --output and --fail-on: the same on every command that produces a report."""
    options = [
        click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
                     help="Report format printed on stdout."),
        click.option("--output", "outputs", multiple=True, type=OutputSpec(FORMATS),
                     help="Also write the report as FMT to PATH (repeatable), e.g. --output json=report.json."),
        click.option("--fail-on", type=click.Choice(FAIL_ON), default="fail", show_default=True,
                     help="Exit 1 on blocking actions (fail), also on warnings (warn), or never (errors still "
                          "exit 3)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command
