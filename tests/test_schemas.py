"""The shipped schemas are valid, documented, closed, current — and shipped inside the wheel."""

from __future__ import annotations

import dataclasses
import json
import runpy
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest

from promote.resources import load_schema

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["contract", "report"])
def test_schema_is_valid_draft_2020_12(name):
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def _walk(node, path="$"):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def test_contract_schema_documents_every_property_and_closes_every_object():
    schema = load_schema("contract")
    for path, node in _walk(schema):
        for key, prop in node.get("properties", {}).items() if isinstance(node.get("properties"), dict) else []:
            assert "description" in prop, f"{path}.properties.{key} has no description"
        if node.get("type") == "object" and "properties" in node and "oneOf" not in node:
            assert node.get("additionalProperties") is False, f"{path} is not closed"


def test_committed_contract_schema_is_generated_from_the_generator():
    namespace = runpy.run_path(str(REPO / "tools" / "gen_contract_schema.py"))
    assert namespace["schema"] == json.loads((REPO / "schemas" / "contract.schema.json").read_text())


@pytest.mark.parametrize("name", ["report", "calibration"])
def test_committed_report_and_calibration_schemas_are_generated(name):
    namespace = runpy.run_path(str(REPO / "tools" / f"gen_{name}_schema.py"))
    assert namespace["schema"] == json.loads((REPO / "schemas" / f"{name}.schema.json").read_text())


def test_report_schema_follows_the_result_types():
    """The stage-name pattern comes from sections.py, statuses and actions from their enums, and every
    dataclass field is a property: a field added to a result type changes the generated schema."""
    from promote.policy import ACTIONS, VERDICTS
    from promote.results import ClauseResult, Status
    from promote.sections import STAGE_NAME_PATTERN

    schema = runpy.run_path(str(REPO / "tools" / "gen_report_schema.py"))["schema"]
    stage = schema["properties"]["stages"]["items"]
    clause = stage["properties"]["clauses"]["items"]
    action = schema["properties"]["actions"]["items"]
    # any well-formed stage name (a plug-in's too); report/load.py checks it is registered
    for named in (stage["properties"]["name"], clause["properties"]["stage"], action["properties"]["stage"]):
        assert named["pattern"] == STAGE_NAME_PATTERN and "enum" not in named
    assert clause["properties"]["status"]["enum"] == [s.value for s in Status]
    assert schema["properties"]["actions"]["items"]["properties"]["action"]["enum"] == list(ACTIONS)
    assert schema["properties"]["verdict"]["enum"] == list(VERDICTS)
    fields = {f.name for f in dataclasses.fields(ClauseResult)}
    assert fields | {"observed_text"} == set(clause["properties"])


def test_example_report_round_trips(mini):
    from click.testing import CliRunner

    from promote.cli import cli
    from promote.report.model import Report

    result = CliRunner().invoke(cli, ["check", str(mini.contract()), "--format", "json"])
    data = json.loads(result.stdout)
    assert Report.from_dict(data).to_dict() == data


def test_wheel_ships_schemas_and_templates(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(REPO)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("promote-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("promote/_data/schemas/contract.schema.json", "promote/_data/schemas/report.schema.json",
                   "promote/_data/templates/report.md.j2", "promote/_data/templates/starter-contract.yaml",
                   "promote/cli.py", "promote/_data/schemas/sinks/httproute.v1.openapi.json",
                   "promote/_data/schemas/sinks/rollout.v1alpha1.openapi.json",
                   "promote/_data/schemas/sinks/flagd.flagd.json", "promote/_data/schemas/sinks/flagd.flags.json",
                   "promote/_data/schemas/sinks/flagd.targeting.json"):
        assert needed in names, needed


def test_contract_docs_are_generated_from_the_schema():
    namespace = runpy.run_path(str(REPO / "tools" / "gen_contract_docs.py"))
    assert namespace["render"](load_schema("contract")) == (REPO / "docs" / "contract.md").read_text()


def test_every_stage_section_schema_comes_from_its_stage_package():
    """The generator only assembles: each stage section's fragment is its package's ``schema()``
    (``stages/<name>/schema.py``), and the committed schema holds exactly that fragment."""
    from promote.sections import decls

    committed = json.loads((REPO / "schemas" / "contract.schema.json").read_text())
    generator = (REPO / "tools" / "gen_contract_schema.py").read_text(encoding="utf-8")
    for decl in decls():
        fragment = decl.implementation().schema()
        assert fragment is not None, decl.name
        assert committed["properties"][decl.section] == fragment, decl.section
        assert f'"{decl.section}":' not in generator, f"{decl.section}'s schema is still written in the generator"
