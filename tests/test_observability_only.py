"""A contract whose only stage is observability needs no `reference`, `candidate` or `data`: it
validates, checks in every output format (the JSON against schemas/report.schema.json), and each
report says it has no kernels; a stage that runs kernels without them is a located contract error."""

from __future__ import annotations

import json
import re
from pathlib import Path
from xml.etree import ElementTree

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from promote.cli import cli
from promote.report.render import NO_DATA, NO_KERNELS
from promote.resources import load_schema

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = REPO / "examples" / "observability" / "canary.prom"
CLAUSES = [
    {"id": "requests-exported", "metric": 'serving_requests_total{version="canary"}', "require": "present"},
    {"id": "p99", "metric": 'serving_e2e_latency_seconds{version="canary"}', "stat": "p99", "max": 1.0},
]


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def contract(tmp_path: Path) -> Path:
    doc = {"version": 1, "name": "deploy-only",
           "observability": {"source": {"kind": "file", "path": str(SNAPSHOT)}, "clauses": CLAUSES}}
    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_validate_passes_without_kernels_or_data(contract):
    result = invoke("validate", str(contract))
    assert result.exit_code == 0, result.output
    assert "stages: observability" in result.output


def test_json_report_has_null_kernels_and_data_and_matches_the_schema(contract):
    result = invoke("check", str(contract), "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    jsonschema.validate(report, load_schema("report"))
    assert report["kernels"] is None and report["data"] is None
    assert [s["name"] for s in report["stages"]] == ["observability"]
    assert {c["status"] for c in report["stages"][0]["clauses"]} == {"pass"}


@pytest.mark.parametrize("fmt", ["text", "markdown", "html"])
def test_human_formats_say_there_are_no_kernels(contract, fmt):
    result = invoke("check", str(contract), "--stage", "observability", "--format", fmt)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert NO_KERNELS.lower() in text.lower() and NO_DATA in text
    assert "requests-exported" in text and "Reference" not in text and "samples" not in text


def test_junit_report_holds_every_clause(contract):
    result = invoke("check", str(contract), "--format", "junit")
    assert result.exit_code == 0, result.output
    root = ElementTree.fromstring(result.stdout)
    names = {case.get("name") for case in root.iter("testcase")}
    assert any("requests-exported" in n for n in names) and any("p99" in n for n in names)
    assert root.find(".//failure") is None


def test_render_from_json_handles_absent_kernels(contract, tmp_path):
    out = tmp_path / "r.json"
    assert invoke("check", str(contract), "--output", f"json={out}").exit_code == 0
    result = invoke("render", str(out), "--format", "markdown")
    assert result.exit_code == 0, result.output
    assert NO_KERNELS.lower() in result.stdout.lower()


@pytest.mark.parametrize(("section", "missing"), [
    ({"numerical": {"clauses": [{"id": "kl", "metric": "kl", "stat": "max", "max": 1.0}]}},
     ["reference", "candidate", "data"]),
    ({"runtime": {"clauses": [{"id": "lat", "metric": "latency", "stat": "p50", "max": 1.0}]}},
     ["reference", "candidate", "data"]),
])
def test_a_kernel_stage_without_kernels_is_a_located_error(tmp_path, section, missing):
    doc = {"version": 1, "name": "half", **section,
           "observability": {"source": {"kind": "file", "path": str(SNAPSHOT)}, "clauses": CLAUSES}}
    path = tmp_path / "half.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    name = next(iter(section))
    line = path.read_text().splitlines().index(f"{name}:") + 1
    for command in ("validate", "check"):
        result = invoke(command, str(path))
        assert result.exit_code == 2, result.output
        for key in missing:
            assert re.search(rf"half\.yaml:{line}:1: error: missing required key `{key}` .*stage section `{name}`",
                             result.output), result.output
        assert "Traceback" not in result.output
