"""The stage registry drives the CLI, the contract's typed sections and the run loop; the
orchestrator takes a typed contract and injected kernels / eval set / earlier results (issue 10)."""

from __future__ import annotations

import json

import yaml
from click.testing import CliRunner

from promote.cli import cli
from promote.contract.model import load_contract
from promote.contract.stage_specs import ObservabilitySpec, RuntimeSpec
from promote.data import load_evalset
from promote.kernels import KERNEL_KINDS, build_kernel, register_kind
from promote.run import CheckOptions, run_check
from promote.sections import STAGE_NAMES, decls
from promote.stages.registry import stages

RUNTIME = {"clauses": [{"id": "p99", "metric": "latency_ms", "stat": "p99", "max_ratio": 1.1}]}
OBSERVABILITY = {"source": {"kind": "prometheus", "url": "http://127.0.0.1:9"},
                 "clauses": [{"id": "err-rate", "query": "sum(rate(errors[5m]))", "max": 0.01}]}


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_one_registry_feeds_cli_choices_sections_and_runners():
    registry = stages()
    assert tuple(registry) == STAGE_NAMES == ("numerics", "slices", "runtime", "observability")
    unknown = CliRunner().invoke(cli, ["check", "missing.yaml", "--stage", "nope"])  # checked at run time
    assert unknown.exit_code == 2 and f"unknown stage 'nope'; valid: {', '.join(STAGE_NAMES)}" in unknown.output
    for decl in decls():
        assert registry[decl.name].implemented == decl.evaluated, decl.name  # a declared stage is never a silent pass
    schema = json.loads(invoke("schema").stdout)
    assert [s for s in schema["properties"] if s in {d.section for d in decls()}] == [d.section for d in decls()]


def test_runtime_and_observability_are_typed_sections(mini):
    path = mini.contract(extra={"runtime": RUNTIME, "observability": OBSERVABILITY})
    contract, _ = load_contract(path)
    assert isinstance(contract.runtime, RuntimeSpec) and contract.runtime.clauses[0].max_ratio == 1.1
    assert isinstance(contract.observability, ObservabilitySpec)
    assert contract.observability.source.kind == "prometheus"
    assert contract.clause_lines("observability")[0][0] == "err-rate"
    assert contract.present() == tuple(contract.sections) == ("numerical", "runtime", "observability")


def test_observability_alone_needs_no_eval_set_and_is_an_error_not_a_pass(mini):
    path = mini.contract(extra={"observability": OBSERVABILITY})
    doc = yaml.safe_load(path.read_text())
    del doc["numerical"]
    doc["data"]["path"] = "missing.jsonl"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert invoke("validate", str(path)).exit_code == 0  # the data file is not forced to exist
    result = invoke("check", str(path), "--format", "json")
    assert result.exit_code == 3
    report = json.loads(result.stdout)
    assert report["data"]["path"].endswith("missing.jsonl")
    assert {k: v for k, v in report["data"].items() if k != "path"} == {"samples": 0, "positions": 0, "read": False}
    assert report["stages"][0]["clauses"][0]["status"] == "error"
    # A stage that reads the eval set still requires the file.
    doc["numerical"] = {"clauses": [{"id": "kl", "metric": "kl", "stat": "mean", "max": 1e-3}]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert "data file `missing.jsonl` not found" in invoke("validate", str(path)).stderr


def test_when_numerics_blocks_the_slices_of_the_same_pass_are_still_shown(mini):
    path = mini.contract(candidate="build_hot", extra={
        "slices": [{"name": "g", "by": "tags.group"}],
        "statistical": {"min_samples": 5, "clauses": [{"id": "slice-kl", "metric": "kl", "stat": "mean",
                                                       "max": 1e-3, "per_slice": True}]},
        "runtime": RUNTIME})
    result = invoke("check", str(path), "--format", "json")
    report = json.loads(result.stdout)
    stages = {s["name"]: s for s in report["stages"]}
    assert stages["numerics"]["status"] == "fail"
    assert stages["slices"]["status"] == "fail"  # computed in the same pass: reported, not hidden
    assert {c["slice"] for c in stages["slices"]["clauses"]} == {"g=a", "g=b"}
    assert stages["runtime"]["status"] == "skipped"  # new work stops after a blocking stage
    assert "blocked promotion" in stages["runtime"]["notes"][0]
    assert result.exit_code == 1


def test_run_check_takes_a_typed_contract_and_injected_kernels_that_stay_open(mini):
    contract, _ = load_contract(mini.contract())
    evalset = load_evalset(contract.data)
    reference = build_kernel(contract.reference, role="reference")
    candidate = build_kernel(contract.candidate, role="candidate")
    with reference, candidate:
        first = run_check(contract, CheckOptions(), kernels={"reference": reference, "candidate": candidate},
                          evalset=evalset)
        assert reference._opened and candidate._opened  # a watch loop keeps them across runs
        calls = reference.seconds
        second = run_check(contract, kernels={"reference": reference, "candidate": candidate}, evalset=evalset)
        assert reference.seconds > calls
    assert first.exit_code == second.exit_code == 0
    assert first.data == {"path": evalset.display_path, "samples": 24, "positions": evalset.positions}
    # Earlier results fill the stages not selected now, as --merge does with a report file.
    runtime = mini.contract("r.yaml", extra={"runtime": RUNTIME})
    typed, _ = load_contract(runtime)
    merged = run_check(typed, CheckOptions(stages=("runtime",)), earlier=first.stages)
    numerics = next(s for s in merged.stages if s.name == "numerics")
    assert numerics.status == "pass" and numerics.notes[0].startswith("merged from results passed to run_check")


def test_kernel_kinds_come_from_a_registry(mini):
    assert {"torch", "onnx", "records"} <= set(KERNEL_KINDS)
    contract, _ = load_contract(mini.contract())
    seen = []

    @register_kind("test-wrapped")
    def wrapped(spec, role):  # a fault-injecting wrapper would build the inner kernel the same way
        seen.append(role)
        return KERNEL_KINDS["torch"](spec, role)

    try:
        spec = contract.candidate.__class__(**{**contract.candidate.__dict__, "kind": "test-wrapped"})
        kernel = build_kernel(spec, role="candidate")
        assert seen == ["candidate"] and kernel.kind == "torch"
    finally:
        del KERNEL_KINDS["test-wrapped"]


def test_a_stage_name_must_have_the_shape_reports_allow():
    """The report schema accepts any name matching sections.STAGE_NAME_PATTERN, so registering a stage
    whose name could not appear in a valid report is refused up front."""
    import pytest

    from promote.sections import STAGES, StageDecl, register

    with pytest.raises(ValueError, match="does not match"):
        register(StageDecl("Bad Name", "bad", "Bad", needs_evalset=False, needs_kernels=False, offline=False))
    assert "Bad Name" not in STAGES.names()
