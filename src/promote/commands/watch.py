"""`promote watch` (judge a live canary window by window, enact each decision through sinks, record it)
and `promote serve` (answer Argo Rollouts' `web` metric and Flagger's webhooks from the latest decision)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from promote import console

WATCH_EXIT_HELP = """\b
Exit codes:
  0  the windows ran (--windows) and the candidate still takes traffic
  1  the windows ran and the candidate's traffic is routed back
  2  usage or contract error (bad flag, sink option, contract, or an audit log that does not verify)
  3  stopped: a window's verdict was `invalid` (the candidate is not what it claims)
  130  interrupted by Ctrl-C (SIGINT); 143  terminated by SIGTERM: the audit log stays whole"""


def _load(contract_path: str):  # noqa: ANN202 - (Contract, WatchSpec)
    from promote.contract.model import load_contract
    from promote.watch.spec import from_contract

    contract, problems = load_contract(contract_path)
    for problem in problems:
        print(problem, file=sys.stderr)
    return contract, from_contract(contract)


def _open_log(path: Path):  # noqa: ANN202 - AuditLog
    from promote.errors import UsageError
    from promote.watch.audit import AuditError, AuditLog

    try:
        return AuditLog(path, exclusive=True)
    except AuditError as exc:
        raise UsageError(f"{exc}; the audit log is never rewritten: keep it as evidence and start a new one with "
                         "--log PATH") from None


@click.command(epilog=WATCH_EXIT_HELP)
@click.argument("contract", type=click.Path(dir_okay=False, path_type=str))
@click.option("--window", "window", default=None, metavar="DURATION",
              help="Length of one window (e.g. 60s, 5m). Default: the contract's watch.window, else 60s.")
@click.option("--windows", type=click.IntRange(min=1), default=None, metavar="N",
              help="Stop after N windows; α is then split as α/N per window. Default: watch.windows, else run until "
                   "stopped (window i spends α/(i(i+1))).")
@click.option("--sink", "sinks", multiple=True, metavar="KIND:key=value,...",
              help="Enact each decision here (repeatable), after the contract's watch.sinks: haproxy, httproute, "
                   "argo-abort, flagd, webhook (docs/watch.md).")
@click.option("--dry-run", is_flag=True, help="Call every sink with dry_run (it reads back, sets nothing); the audit "
                                              "log records each call.")
@click.option("--log", "log_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The audit log (hash-chained JSONL, appended). Default: watch.log, else CONTRACT.watch.jsonl "
                   "beside the contract.")
@click.option("--requests", "requests_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The JSONL request log to sample prompts from (overrides watch.requests.path). Default: the "
                   "contract's, else the eval set.")
@click.option("--candidate-digest", default=None, metavar="DIGEST",
              help="What identifies the candidate (image or weights digest); a digest is promoted at most once. "
                   "Default: watch.candidate_digest, else the sha256 of the candidate's kernel spec.")
@click.pass_context
def watch(ctx: click.Context, contract: str, window: str | None, windows: int | None, sinks: tuple[str, ...],
          dry_run: bool, log_path: Path | None, requests_path: Path | None, candidate_digest: str | None) -> None:
    """Judge a live canary every window: runtime, observability and shadow numerics; route back, restore
    or promote through sinks; append every decision to a hash-chained audit log (docs/watch.md)."""
    from dataclasses import replace

    from promote.watch.loop import Watch
    from promote.watch.requestlog import RequestLogSpec
    from promote.watch.sinks import build_sinks
    from promote.watch.spec import default_digest, parse_sink_flag, window_flag

    flags = [parse_sink_flag(s) for s in sinks]
    loaded, spec = _load(contract)
    overrides = {"window_s": window_flag(window), "windows": windows, "log": log_path}
    spec = replace(spec, **{k: v for k, v in overrides.items() if v is not None}, sinks=(*spec.sinks, *flags))
    if requests_path is not None:
        base = spec.requests or RequestLogSpec(path=requests_path, display_path=str(requests_path), sample=spec.sample,
                                               seed=spec.seed)
        spec = replace(spec, requests=replace(base, path=requests_path, display_path=str(requests_path)))
    built = build_sinks(spec.sinks)
    log = _open_log(spec.log)
    digest = candidate_digest or spec.candidate_digest or default_digest(loaded)
    console.message(f"promote watch: {loaded.source.display_path} every {spec.window_s:g} s, candidate {digest}, "
                    f"{len(built)} sink(s){' (dry run)' if dry_run else ''}, audit log {spec.log} "
                    f"({len(log.records)} earlier records)")
    with contextlib.ExitStack() as stack:
        stack.callback(log.close)
        runner = Watch(loaded, spec, built, log, digest, dry_run=dry_run, stack=stack)
        base: list = []

        def evalset():  # noqa: ANN202 - the contract's eval set, read on first use
            if not base:
                from promote.data import load_evalset

                base.append(load_evalset(loaded.data))
            return base[0]

        runner.base_evalset = evalset
        code = runner.run()
    console.message(f"promote watch: audit log {spec.log}: {len(log.records)} records, last hash {log.last_hash}")
    ctx.exit(code)


@click.command()
@click.argument("contract", type=click.Path(dir_okay=False, path_type=str))
@click.option("--port", type=click.IntRange(min=0, max=65535), default=8642, show_default=True,
              help="TCP port (0: any free port, printed on stdout).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Only loopback by default: expose it through your ingress/proxy.")
@click.option("--log", "log_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The audit log `promote watch` writes. Default: as `promote watch`.")
@click.option("--stale-after", default=None, metavar="DURATION",
              help="A latest decision older than this is missing data (Failed). Default: watch.stale_after, else "
                   "three times watch.window.")
@click.pass_context
def serve(ctx: click.Context, contract: str, port: int, host: str, log_path: Path | None,
          stale_after: str | None) -> None:
    """Answer Argo Rollouts' `web` metric (GET /argo) and Flagger's webhooks (POST /flagger/confirm-rollout,
    /flagger/confirm-promotion, /flagger/rollback) from the latest decision in the audit log."""
    from promote.watch.serve import serve_forever
    from promote.watch.spec import window_flag

    loaded, spec = _load(contract)
    stale = window_flag(stale_after, "--stale-after")
    serve_forever(loaded, log_path or spec.log, host=host, port=port, stale_s=stale or spec.stale_s,
                  watch_promotes=spec.rules.promote_after is not None)
    ctx.exit(0)
