"""The shipped slice demonstration: a Cyrillic-only fault that every aggregate numerics clause misses
is caught by the slice stage with the slice named, and the honest bf16 candidate passes (no false alarm)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from click.testing import CliRunner

from promote.cli import cli
from promote.resources import load_schema

CONTRACT = Path(__file__).resolve().parents[1] / "examples" / "tiny_lm" / "slices.yaml"


def run(candidate: str | None):
    env = {"PROMOTE_CANDIDATE": candidate} if candidate else {}
    result = CliRunner().invoke(cli, ["check", str(CONTRACT), "--format", "json", "--all-stages"], env=env,
                                catch_exceptions=False)
    report = json.loads(result.stdout)
    jsonschema.validate(report, load_schema("report"))
    stages = {s["name"]: s for s in report["stages"]}
    return result.exit_code, report, stages


def test_honest_bf16_candidate_passes_every_slice():
    code, report, stages = run(None)
    assert code == 0, [c["message"] for s in stages.values() for c in s["clauses"] if c["status"] != "pass"]
    assert stages["numerics"]["status"] == "pass" and stages["slices"]["status"] == "pass"
    scripts = {c["slice"] for c in stages["slices"]["clauses"] if c["id"] == "slice-kl"}
    assert {"script=latin", "script=cyrillic", "script=cjk", "script=code"} <= scripts


def test_cyrillic_only_fault_passes_aggregates_but_the_slice_stage_names_it(cyrillic_fault_run):
    code, report = cyrillic_fault_run["exit_code"], cyrillic_fault_run["report"]  # run once, shared (conftest)
    jsonschema.validate(report, load_schema("report"))
    stages = {s["name"]: s for s in report["stages"]}
    assert code == 1
    assert {c["status"] for c in stages["numerics"]["clauses"]} == {"pass"}  # every aggregate clause misses it
    failing = {c["slice"] for c in stages["slices"]["clauses"] if c["status"] == "fail" and c["id"] == "slice-kl"}
    assert failing == {"script=cyrillic", "lang=ru", "lang=uk"}
    (worst,) = [c for c in stages["slices"]["clauses"] if c["id"] == "worst-kl"]
    assert worst["status"] == "fail" and "cyrillic" in worst["slice"]
    actions = {(a["clause"], a["slice"]): a["action"] for a in report["actions"]}
    assert actions[("slice-kl", "script=cyrillic")] == "route-to-reference"
    assert actions[("slice-kl", "script=latin")] == "pass"
