"""`promote check` and `promote merge`: run a contract (or merge its shards' partials) into a report,
and end the way every report-producing command ends (cli_emit.emit: outputs, stdout, GitHub, exit)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from promote import console
from promote.cli_emit import check_output_paths, emit, github_mode
from promote.commands.options import EXIT_CODES_HELP, report_options


def check_stage_names(stages: tuple[str, ...]) -> None:
    """``--stage`` against the registry at run time (after ``$PROMOTE_PLUGINS`` is loaded), so a
    plug-in's stage can be picked; an unknown name is a usage error (exit 2) listing the valid ones."""
    from promote.contract.plugins import load_env_plugins
    from promote.sections import stage_names

    load_env_plugins()
    unknown = [s for s in stages if s not in stage_names()]
    if unknown:
        raise click.BadParameter(f"unknown stage {unknown[0]!r}; valid: {', '.join(stage_names())} (a plug-in's "
                                 "stage needs its module named in $PROMOTE_PLUGINS)", param_hint="'--stage'")


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("contract", type=click.Path(dir_okay=False, path_type=str))
@click.option("--stage", "stages", multiple=True, metavar="NAME",
              help="Run only these stages (repeatable): numerics, slices, runtime, observability, or a plug-in's "
                   "($PROMOTE_PLUGINS). Default: every stage the contract has.")
@report_options
@click.option("--all-stages", is_flag=True, help="Keep running later stages after a stage the policy blocks.")
@click.option("--merge", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="An earlier JSON report of the same contract: stages not selected with --stage are taken from "
                   "it, so one report (and PR comment) covers every stage.")
@click.option("--progress/--no-progress", default=None,
              help="Progress on stderr: a line updated in place on a terminal; elsewhere (a pipe, a file, a CI "
                   "log) a plain line when the run starts and one every ~5 s. Default: on.")
@click.option("--color/--no-color", "colour", default=None,
              help="Colour the text report. Default: on a terminal, honouring NO_COLOR and FORCE_COLOR.")
@click.option("--github/--no-github", "github", default=None,
              help="GitHub mode: job summary, annotations and step outputs. Default: on when GITHUB_ACTIONS=true.")
@click.option("--comment", "comment_mode", type=click.Choice(["auto", "off"]), default="auto", show_default=True,
              help="auto: in GitHub mode on a pull request, post or update the sticky PR comment (needs "
                   "GITHUB_TOKEN or GH_TOKEN). off: never.")
@click.option("--shard", default=None, metavar="I/N",
              help="Compute only shard I of N (0-based) of the offline pass and write it with --partial; combine "
                   "the N partials with `promote merge` (docs/scale-out.md).")
@click.option("--partial", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where --shard writes the shard's partial state (versioned; read by `promote merge`).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where the offline pass runs: this process, or Ray actors merged here (needs promote[ray]).")
@click.option("--address", default=None,
              help="--engine ray: the Ray cluster (e.g. ray://head:10001 or auto). Default: $RAY_ADDRESS, else a "
                   "local Ray started for this run.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="--engine ray: actors (one shard each), each with both kernels and 1 torch thread.")
@click.option("--metrics-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write what stage 3 (runtime) measured to this file in Prometheus exposition format.")
@click.pass_context
def check(ctx: click.Context, contract: str, stages: tuple[str, ...], fmt: str,
          outputs: tuple[tuple[str, Path], ...], fail_on: str, all_stages: bool, progress: bool | None,
          colour: bool | None, github: bool | None, comment_mode: str, merge: Path | None, shard: str | None,
          partial: Path | None, engine: str, address: str | None, workers: int,
          metrics_out: Path | None) -> None:
    """Run the contract's stages and print a report; the exit code is the gate.

    Publishing (summary, annotations, comment) never changes the exit code: a comment that cannot be
    posted is reported as a notice or warning.
    """
    from promote.progress import default_mode
    from promote.run import CheckOptions, run_check

    check_stage_names(stages)
    if shard is not None or partial is not None:
        from promote.commands.shard import write_partial

        ctx.exit(write_partial(contract, stages, shard, partial, engine=engine, outputs=outputs, merge=merge,
                               progress=progress))
    command = ["promote", "check", contract, *[f"--stage={s}" for s in stages]]
    if engine != "local":
        command += [f"--engine={engine}", f"--workers={workers}"]
    if fail_on != "fail":
        command.append(f"--fail-on={fail_on}")
    if merge is not None:
        command.append(f"--merge={merge}")
    options = CheckOptions(stages=stages, fail_on=fail_on, all_stages=all_stages,
                           progress=default_mode(progress, stderr_is_tty=sys.stderr.isatty()),
                           command=shlex.join(command), merge=merge, engine=engine, address=address, workers=workers)
    github = github_mode(github)
    console.set_github(github)  # every message from here on is fenced in GitHub mode (console.py)
    check_output_paths(outputs, metrics_out=metrics_out)
    emit(ctx, run_check(contract, options), fmt, outputs, colour, github, comment_mode, metrics_out=metrics_out)


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("partials", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--contract", "contract", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="The contract the shards ran (default: the path recorded in the partials); it must have the same "
                   "sha256 after ${VAR} interpolation.")
@report_options
@click.option("--color/--no-color", "colour", default=None, help="Colour the text report (as `check`).")
@click.option("--github/--no-github", "github", default=None, help="GitHub mode (as `check`).")
@click.option("--comment", "comment_mode", type=click.Choice(["auto", "off"]), default="auto", show_default=True,
              help="auto: in GitHub mode on a pull request, post or update the sticky PR comment.")
@click.pass_context
def merge(ctx: click.Context, partials: tuple[Path, ...], contract: str | None, fmt: str,
          outputs: tuple[tuple[str, Path], ...], fail_on: str, colour: bool | None, github: bool | None,
          comment_mode: str) -> None:
    """Merge the partials of `check --shard I/N` into one report; the exit code is the gate.

    Every shard must be given exactly once, all of one contract, kernels and eval set: a missing,
    duplicated or foreign partial is an error naming it (exit 2), never a pass on part of the data.
    The report equals a single-process `promote check` of the contract.
    """
    from promote.run import CheckOptions, run_merge

    github = github_mode(github)
    console.set_github(github)
    check_output_paths(outputs)
    command = shlex.join(["promote", "merge", *map(str, partials), *([f"--contract={contract}"] if contract else []),
                          *([f"--fail-on={fail_on}"] if fail_on != "fail" else [])])
    report = run_merge(partials, CheckOptions(fail_on=fail_on, command=command), contract=contract)
    emit(ctx, report, fmt, outputs, colour, github, comment_mode)
