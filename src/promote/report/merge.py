"""Merge stage results from an earlier JSON report into this run (docs/cli.md, `check --merge`).

Stages run at different times — numerics and slices on the pull request, runtime and observability
at deploy time — but a release manager wants one report. ``promote check --stage runtime --merge
offline.json`` takes the stages this run did not select from the earlier report, so the verdict and
the PR comment cover all of them. The earlier report must come from the same contract as evaluated
(same sha256 of its data after ``${VAR}`` interpolation): results of another contract version, or of
the same file with another candidate in a variable, would be judged against the wrong clauses.
"""

from __future__ import annotations

from pathlib import Path

from promote.errors import PromoteError, UsageError
from promote.results import NOT_SELECTED, StageResult


def read_stages(path: Path, *, contract_sha256: str,
                raw_sha256: str | None = None) -> tuple[dict[str, StageResult], str]:
    """The stage results of an earlier report, by stage name, and when that report finished.

    Raises:
        UsageError: unreadable or invalid report, or one made from a different contract.
    """
    from promote.report.load import load_report

    if not path.exists():
        raise UsageError(f"{path}: report to merge not found; pass a JSON report written by "
                         "`promote check --output json=PATH`")
    try:
        report = load_report(path)  # the one reader of report JSON: bounded, strict, schema-valid, verified
    except PromoteError as exc:
        raise UsageError(exc.format_message()) from None
    contract = report.contract
    if contract["sha256"] != contract_sha256:
        if raw_sha256 is not None and contract.get("raw_sha256") == raw_sha256:
            raise UsageError(f"{path}: made from the same contract file but with other values for its ${{VAR}} "
                             f"references (interpolated sha256 {contract['sha256'][:12]}…, this run's "
                             f"{contract_sha256[:12]}…); set the variables as that report's `reproduce` command "
                             "shows, or merge only reports made with the same values")
        raise UsageError(f"{path}: made from contract `{contract['name']}` with sha256 "
                         f"{contract['sha256'][:12]}…, but this contract's sha256 is {contract_sha256[:12]}…; "
                         "merge only reports of the same contract version")
    return {stage.name: stage for stage in report.stages}, report.finished_at


def merge_into(results: list[StageResult], earlier: dict[str, StageResult], source: str,
               finished_at: str) -> list[StageResult]:
    """Replace every stage this run skipped as not selected with the earlier run's result of it."""
    merged = []
    for stage in results:
        previous = earlier.get(stage.name)
        if previous is not None and stage.notes and NOT_SELECTED in stage.notes[0]:
            previous.notes = [f"merged from {source} (run finished {finished_at})", *previous.notes]
            merged.append(previous)
        else:
            merged.append(stage)
    return merged
