"""The `promote` command line: parse → build → run → exit code (DESIGN.md §7).

Exit codes: 0 pass (or warn), 1 gate failed, 2 usage or contract error, 3 could not evaluate,
130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
Results go to stdout, logs and errors to stderr. Heavy imports (torch, onnxruntime, the stages)
happen inside the commands that need them, so `promote --help` and `promote validate` start fast.
"""

from __future__ import annotations

import math
import os
import shlex
import signal
import sys
from pathlib import Path

import click

from promote import __version__, console
from promote.cli_emit import check_output_paths, emit, github_mode
from promote.cli_emit import token as github_token
from promote.errors import EXIT_COULD_NOT_EVALUATE, EXIT_USAGE, PromoteError
from promote.output_spec import OutputSpec
from promote.policy import FAIL_ON
from promote.report.formats import FORMATS
from promote.sections import STAGE_NAMES

STAGES = STAGE_NAMES  # the stage registry's names, in run order (sections.py)

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


class _Group(click.Group):
    """click turns a KeyboardInterrupt into "Aborted!" and exit 1, which reads as a failed gate;
    promote reports it as an interruption (exit 130) instead."""

    def invoke(self, ctx: click.Context):  # noqa: ANN201 - click's signature
        from promote.signals import Interrupted

        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted(signal.SIGINT) from None


def _report_options(command):  # noqa: ANN001, ANN202 - a click decorator
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


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, "--version", prog_name="promote")
def cli() -> None:
    """Check an inference kernel against its reference kernel under a kernel contract."""
    from promote.redact import reset

    reset()  # one invocation, one set of masked values (matters when tests invoke many in one process)
    console.set_github(None)


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("contract", type=click.Path(dir_okay=False, path_type=str))
@click.option("--stage", "stages", multiple=True, type=click.Choice(STAGES),
              help="Run only these stages (repeatable). Default: every stage the contract has.")
@_report_options
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

    if shard is not None or partial is not None:
        from promote.shard_cli import write_partial

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


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("partials", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--contract", "contract", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="The contract the shards ran (default: the path recorded in the partials); it must have the same "
                   "sha256 after ${VAR} interpolation.")
@_report_options
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


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("contracts", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--no-data", is_flag=True, help="Do not read the eval set (check only the contract file).")
@click.pass_context
def validate(ctx: click.Context, contracts: tuple[str, ...], no_data: bool) -> None:
    """Check contract files (and their eval sets) without running any kernel.

    Every problem is printed as FILE:LINE:COL: message. Exit 0 when all are valid (warnings allowed),
    2 otherwise.
    """
    from promote.contract.load import ContractError
    from promote.contract.model import load_contract
    from promote.data import load_evalset

    failed = False
    for path in contracts:
        try:
            contract, warnings = load_contract(path)
            if not no_data and contract.needs_evalset:  # observability alone reads no eval set
                load_evalset(contract.data)
        except ContractError as exc:
            failed = True
            console.message("\n".join(str(problem) for problem in exc.problems))
            continue
        except PromoteError as exc:
            failed = True
            console.message(f"{path}: error: {exc.format_message()}")
            continue
        if warnings:
            console.message("\n".join(str(problem) for problem in warnings))
        console.message(f"{path}: ok (contract `{contract.name}`, stages: {', '.join(contract.sections())})", err=False)
    ctx.exit(EXIT_USAGE if failed else 0)


@cli.command(epilog=EXIT_CODES_HELP)
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="A JSON report (`check --output json=...`) to render as the comment.")
@click.option("--body", "body_path", type=click.Path(dir_okay=False, path_type=Path),
              help="A pre-rendered comment body (must carry promote's marker); prefer --report for untrusted input.")
@click.option("--pr", type=click.IntRange(min=1), help="Pull request number. Default: from the event payload, "
              "GITHUB_REF, or the PR whose head is the commit.")
@click.option("--repo", help="owner/name. Default: $GITHUB_REPOSITORY.")
@click.option("--api-url", help="REST API base. Default: $GITHUB_API_URL, else https://api.github.com.")
@click.option("--dry-run", is_flag=True, help="Print the body, its byte size and the planned requests; send nothing.")
@click.option("--artifact-url", help="With --report: link this URL (the uploaded HTML and JSON report, an https "
              "URL) under the verdict.")
@click.pass_context
def comment(ctx: click.Context, report_path: Path | None, body_path: Path | None, pr: int | None, repo: str | None,
            api_url: str | None, dry_run: bool, artifact_url: str | None) -> None:
    """Post or update the sticky PR comment for a report (token from GITHUB_TOKEN or GH_TOKEN).

    Exit 0 when the comment was posted, was unchanged, or there is nothing to comment on (no PR, a
    fork PR); 2 for bad input or a missing token; 3 when GitHub refused or could not be reached.
    """
    from promote.github.comment import Context
    from promote.github.workflow import in_actions
    from promote.publish import CommentRequest, Log, comment_request_for, marker_in, publish_comment

    if (report_path is None) == (body_path is None):
        raise click.UsageError("give exactly one of --report REPORT.json or --body COMMENT.md")
    token = github_token()
    extra = {"api_url": api_url, "repo": repo, "pr": pr, "dry_run": dry_run}
    if artifact_url is not None:
        from promote.report.filters import artifact_url as safe_url

        if report_path is None or safe_url(artifact_url) is None:
            raise click.BadParameter("needs --report and a plain https URL (no spaces, quotes or brackets)",
                                     param_hint="--artifact-url")
    if report_path is not None:
        request = comment_request_for(_load_report(report_path), token=token, artifact_url=artifact_url, **extra)
    else:
        body = _read(body_path)
        found = marker_in(body)
        if found is None:
            raise PromoteError(f"{body_path} has no promote marker (<!-- promote:report key=... -->); render it "
                               "with `promote check --output markdown=...` or use --report")
        request = CommentRequest(body=body, minimal_body=None, marker=found, token=token, **extra)
    result = publish_comment(request, Context.from_env(), Log(github=in_actions()))
    if result.status == "no-token":
        raise PromoteError("no GitHub token: set GITHUB_TOKEN or GH_TOKEN (or use --dry-run)")
    ctx.exit(EXIT_COULD_NOT_EVALUATE if result.status == "failed" else 0)


def _read(path: Path) -> str:
    from promote.report.load import read_text

    return read_text(path)


def _load_report(path: Path):  # noqa: ANN202 - a Report
    from promote.report.load import load_report

    return load_report(path)


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("report_path", metavar="REPORT.json", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="html", show_default=True,
              help="Format to render the report in.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the rendering to this file (atomically) instead of stdout.")
def render(report_path: Path, fmt: str, output: Path | None) -> None:
    """Re-render a JSON report (`check --output json=...`) in any format, e.g. the HTML report.

    The report is validated against the report schema first. Exit 0 when written, 2 for an unreadable
    or invalid report or an unwritable output.
    """
    from promote.report.render import RENDERERS

    text = RENDERERS[fmt](_load_report(report_path))
    if output is None:
        click.echo(text, nl=False)
        return
    from promote.atomic import write_text_atomic

    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(output, text)
    except OSError as exc:
        raise PromoteError(f"cannot write {output}: {exc.strerror or exc}") from None
    console.message(f"promote: wrote {fmt} report to {output}")


@cli.command()
@click.option("--drift", type=FiniteFloat(min=0), help="Per-position logit drift d = ‖z_c − z_r‖∞.")
@click.option("--osc", type=FiniteFloat(min=0), help="Per-position logit oscillation (max δ − min δ ≤ 2d).")
@click.option("--seq-len", type=click.IntRange(min=1), help="Sequence length T for sequence-level bounds.")
@click.option("--reward-range", type=(FiniteFloat(), FiniteFloat()), default=None, metavar="A B",
              help="Bounded reward [A, B].")
@click.option("--clip", type=FiniteFloat(min=0, min_open=True), help="PPO clip ε (budget osc ≤ log(1+ε)).")
@click.option("--advantage-max", type=FiniteFloat(min=0), help="|A| ≤ A_max for the policy-gradient bias.")
@click.option("--score-norm", type=FiniteFloat(min=0), help="‖∇log π‖ ≤ G for the policy-gradient bias.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def bounds(drift: float | None, osc: float | None, seq_len: int | None, reward_range: tuple[float, float] | None,
           clip: float | None, advantage_max: float | None, score_norm: float | None, fmt: str) -> None:
    """Print what a logit drift implies: TV, KL, log-ratio, importance weights, reward, sequence, PPO clip."""
    import json

    from promote.bounds import implications

    if drift is None and osc is None:
        raise click.UsageError("give --drift or --osc")
    if reward_range is not None and reward_range[0] > reward_range[1]:
        raise click.BadParameter("A must not exceed B", param_hint="--reward-range")
    chain = implications(osc=osc, drift=drift, seq_len=seq_len, reward_range=reward_range, clip=clip,
                         advantage_max=advantage_max, score_norm=score_norm)
    if fmt == "json":
        click.echo(json.dumps([link.to_dict() for link in chain], indent=2, ensure_ascii=False))
        return
    for link in chain:
        note = f"   ({link.assumes})" if link.assumes else ""
        click.echo(f"{link.name:<24} ≤ {link.bound:<12.6g} = {link.formula}{note}")


@cli.command()
@click.argument("which", type=click.Choice(["contract", "report"]), default="contract")
def schema(which: str) -> None:
    """Print the JSON Schema of a contract (default) or of the JSON report."""
    from promote.resources import schema_text

    click.echo(schema_text(which), nl=False)


@cli.command()
@click.argument("path", type=click.Path(path_type=Path), default=Path("promote.yaml"))
@click.option("--example/--no-example", default=True, show_default=True,
              help="Copy the embedded example's model.py, weights.safetensors and eval.jsonl beside the contract, "
                   "so it runs as written; --no-example writes the contract alone.")
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
def init(path: Path, example: bool, force: bool) -> None:
    """Write a commented starter contract to PATH (default promote.yaml; a directory: PATH/promote.yaml)."""
    from promote.starter import write_starter

    written = write_starter(path, example=example, force=force)
    if example:
        click.echo(f"wrote {written[0]} and the example it checks beside it: {', '.join(p.name for p in written[1:])} "
                   f"(a tiny byte-level LM, fp32 reference vs bf16 candidate)\nrun it:  promote check {written[0]}\n"
                   "then point its `model`, `weights` and `data.path` at your own model and eval set")
    else:
        click.echo(f"wrote {written[0]}; edit the kernels and data paths, then run: promote validate {written[0]}")


def _add_calibrate() -> None:
    from promote.calibrate.command import calibrate_command  # click only at import; the work is lazy

    cli.add_command(calibrate_command)


_add_calibrate()


def main() -> None:
    """Console-script entry: click handles PromoteError (with its exit code); anything else is a bug,
    reported as exit 3 ("could not evaluate") rather than exit 1, which would read as a failed gate.
    SIGINT/SIGTERM stop the run with 130/143 (promote/signals.py tells them from user code's own
    KeyboardInterrupt/SystemExit, which are evaluation errors)."""
    from promote.signals import Interrupted, exit_now, handling, stuck_threads

    try:
        with handling():
            cli.main(prog_name="promote")
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
