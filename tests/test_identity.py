"""Issue 23: the identity check runs before any metric; a planted mismatch makes the run `invalid` (exit 3,
nothing judged), an honest pair gets no finding. Real torch kernels and real tokenizer files (the
`tokenizers` library) on the mini project of conftest.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from safetensors.numpy import save_file

from promote.cli import cli
from promote.findings import Finding
from promote.identity.result import IdentityResult
from promote.policy import decide
from promote.report.load import load_report

MODELS = '''
import torch


class Rows(torch.nn.Module):
    """Embedding -> linear over `rows` output ids; rows from `pad_from` on get `pad_value` added."""

    def __init__(self, rows=16, pad_from=None, pad_value=0.0):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.emb = torch.nn.Parameter(torch.randn(32, 8, generator=g))
        self.out = torch.nn.Parameter(torch.randn(8, rows, generator=g))
        self.pad_from, self.pad_value = pad_from, pad_value

    def forward(self, ids):
        logits = self.emb[ids] @ self.out
        if self.pad_from is not None:
            logits[..., self.pad_from:] += self.pad_value
        return logits


def build():
    return Rows()


def build_wide():
    return Rows(rows=20)


def build_padded_ref():
    return Rows(pad_from=12, pad_value=-3.0)


def build_padded_cand():
    return Rows(pad_from=12, pad_value=+4.0)  # only the padded rows differ from the reference
'''


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def write_tokenizer(folder: Path, size: int) -> Path:
    """A real tokenizer.json of ``size`` ids (a word-level model, as `tokenizers` saves it)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    folder.mkdir(parents=True, exist_ok=True)
    Tokenizer(WordLevel({f"w{i}": i for i in range(size)}, unk_token="w0")).save(str(folder / "tokenizer.json"))
    return folder / "tokenizer.json"


def project(tmp_path: Path, *, reference: str = "build", candidate: str = "build", max_id: int = 11,
            identity: dict | None = None, extra_ids: list[int] | None = None) -> Path:
    (tmp_path / "models.py").write_text(MODELS)
    lines = [json.dumps({"id": f"s{i:02d}", "input_ids": [(i * 7 + t * 3) % (max_id + 1) for t in range(6 + i % 4)]})
             for i in range(12)]
    if extra_ids:
        lines.append(json.dumps({"id": "odd", "input_ids": extra_ids}))
    (tmp_path / "eval.jsonl").write_text("\n".join(lines) + "\n")
    doc = {"version": 1, "name": "identity",
           "reference": {"kind": "torch", "model": f"models.py:{reference}", "batch_size": 4},
           "candidate": {"kind": "torch", "model": f"models.py:{candidate}", "batch_size": 4},
           "data": {"path": "eval.jsonl"},
           "numerical": {"clauses": [{"id": "kl", "metric": "kl", "stat": "max", "max": 1e-6},
                                     {"id": "agree", "metric": "argmax_agree", "stat": "mean", "min": 0.99}]}}
    if identity is not None:
        doc["identity"] = identity
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run(path: Path) -> tuple[object, dict]:
    out = path.parent / "report.json"
    result = invoke("check", str(path), "--output", f"json={out}", "--output", f"markdown={path.parent / 'r.md'}")
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    return result, json.loads(out.read_text())


def invalid_findings(report: dict) -> list[dict]:
    return [f for f in report["identity"]["findings"] if f["severity"] == "invalid"]


def assert_not_judged(report: dict) -> None:
    """An invalid run: verdict invalid, exit 3, every numerics clause `invalid` with why, none judged."""
    assert report["verdict"] == "invalid" and report["exit_code"] == 3
    stage = report["stages"][0]
    assert stage["status"] == "invalid" and stage["details"] == {}
    assert all(c["status"] == "invalid" and c["message"].startswith("not judged") for c in stage["clauses"])
    assert all("observed" not in c or c["observed"] is None for c in stage["clauses"])


def test_an_honest_pair_has_no_finding(tmp_path):
    result, report = run(project(tmp_path))
    assert result.exit_code == 0, result.output
    assert report["identity"]["findings"] == [] and report["identity"]["invalid"] is False
    assert report["identity"]["checked"] == ["vocabulary", "prompt", "fingerprint", "value_semantics", "sampling"]
    assert report["identity"]["probe_samples"] == 4 and report["verdict"] == "pass"


def test_vocabulary_sizes_that_differ_are_invalid_not_a_numerical_fail(tmp_path):
    result, report = run(project(tmp_path, candidate="build_wide"))
    assert result.exit_code == 3, result.output
    assert_not_judged(report)
    [finding] = invalid_findings(report)
    assert finding["check"] == "vocabulary" and finding["side"] == "both"
    assert "vocabulary sizes differ" in finding["message"] and "16" in finding["message"] and "20" in finding["message"]
    assert "identity.tokenizer" in finding["fix"]
    text = (tmp_path / "r.md").read_text()
    assert text.index("Identity check") < text.index("kl"), "findings come first in the markdown report"


def test_padded_rows_are_excluded_from_every_metric_and_reported_as_a_note(tmp_path):
    """Model rows 12..15 are padding beyond a 12-id tokenizer; the sides differ only there. Without the
    exclusion the KL bound of 1e-6 fails; with it the pair is identical."""
    write_tokenizer(tmp_path / "tok", 12)
    path = project(tmp_path, reference="build_padded_ref", candidate="build_padded_cand",
                   identity={"tokenizer": "tok/tokenizer.json"})
    result, report = run(path)
    assert result.exit_code == 0, result.output
    assert report["identity"]["scored_vocab"] == 12
    [note] = report["identity"]["findings"]
    assert note["check"] == "vocabulary" and note["severity"] == "note"
    assert note["evidence"]["padded"] == {"reference": 4, "candidate": 4}
    assert report["stages"][0]["clauses"][0]["observed"] == pytest.approx(0.0, abs=1e-9)


def test_padded_rows_are_invalid_when_the_contract_requires_one_vocabulary(tmp_path):
    write_tokenizer(tmp_path / "tok", 12)
    path = project(tmp_path, identity={"tokenizer": "tok/tokenizer.json", "same": ["vocabulary"]})
    result, report = run(path)
    assert result.exit_code == 3, result.output
    assert_not_judged(report)
    assert invalid_findings(report)[0]["check"] == "vocabulary"


def test_eval_set_ids_beyond_the_tokenizer_are_invalid(tmp_path):
    write_tokenizer(tmp_path / "tok", 12)
    path = project(tmp_path, identity={"tokenizer": "tok/tokenizer.json"}, extra_ids=[1, 2, 13, 3])
    result, report = run(path)
    assert result.exit_code == 3, result.output
    assert_not_judged(report)
    [finding] = invalid_findings(report)
    assert finding["side"] == "eval_set" and "sample `odd` has token id 13" in finding["message"]
    assert "tokenizer's vocabulary" in finding["message"] and "tokenize the eval set" in finding["fix"]


def test_eval_set_ids_beyond_the_model_in_a_later_batch_are_invalid(tmp_path):
    """The probe batch is clean; the full-set scan finds the id past the model's 16 rows before any metric."""
    result, report = run(project(tmp_path, extra_ids=[1, 2, 17, 3]))
    assert result.exit_code == 3, result.output
    assert_not_judged(report)
    [finding] = invalid_findings(report)
    assert finding["side"] == "eval_set" and "token id 17" in finding["message"] and "model's vocabulary" in \
        finding["message"]


def test_same_weights_required_and_different_is_invalid(tmp_path):
    path = project(tmp_path, identity={"same": ["weights"]})
    for role, value in (("reference", 1.0), ("candidate", 2.0)):
        save_file({"scale": np.full(4, value, np.float32)}, str(tmp_path / f"{role}.safetensors"))
    doc = yaml.safe_load(path.read_text())
    doc["identity"]["reference"] = {"weights": "reference.safetensors"}
    doc["identity"]["candidate"] = {"weights": "candidate.safetensors"}
    path.write_text(yaml.safe_dump(doc))
    result, report = run(path)
    assert result.exit_code == 3, result.output
    [finding] = invalid_findings(report)
    assert finding["check"] == "fingerprint" and "requires weights to be equal" in finding["message"]
    fps = report["identity"]["fingerprints"]
    assert fps["reference"]["weights"]["sha256"] != fps["candidate"]["weights"]["sha256"]
    doc["identity"]["candidate"] = {"weights": "reference.safetensors"}  # the honest pair: one file
    path.write_text(yaml.safe_dump(doc))
    result, report = run(path)
    assert result.exit_code == 0, result.output
    assert report["identity"]["findings"] == []


def test_a_missing_identity_file_is_a_contract_error_naming_the_key(tmp_path):
    result = invoke("check", str(project(tmp_path, identity={"tokenizer": "nowhere/tokenizer.json"})))
    assert result.exit_code == 2
    assert result.stderr.count("`tokenizer: nowhere/tokenizer.json` does not exist") == 1
    assert "(at $.identity.tokenizer)" in result.stderr


def test_the_policy_and_verify_agree_on_invalid(tmp_path):
    result, report = run(project(tmp_path, candidate="build_wide"))
    loaded = load_report(tmp_path / "report.json")  # verify.py re-derives `invalid` from the findings
    assert loaded.invalid and loaded.verdict == "invalid" and loaded.findings[0].check == "vocabulary"
    edited = dict(report, verdict="pass", exit_code=0)
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    refused = invoke("render", str(tmp_path / "edited.json"))
    assert refused.exit_code == 2 and "invalid" in refused.output + refused.stderr


def test_decide_gives_invalid_over_error_and_never_a_pass():
    from promote.contract.model import Escalation
    from promote.results import ClauseResult, StageResult

    passed = [StageResult("numerics", "pass", [ClauseResult("a", "numerics", "pass", "ok")])]
    finding = Finding("prompt", "invalid", "candidate", "scored other ids", "send the ids as they are")
    decision = decide(passed, Escalation(), findings=[finding])
    assert (decision.verdict, decision.exit_code) == ("invalid", 3)
    note = Finding("vocabulary", "note", "both", "padded", "nothing")
    assert decide(passed, Escalation(), findings=[note]).verdict == "pass"
    assert IdentityResult(findings=[finding]).invalid and not IdentityResult(findings=[note]).invalid


def test_calibrate_counts_an_invalid_row_as_neither_a_catch_nor_a_pass():
    from promote.calibrate.table import _cell, _row_outcome, judge
    from promote.results import ClauseResult

    def cells(*statuses: str, kind: str) -> dict:
        return {f"c{i}": _cell([ClauseResult(f"c{i}", "numerics", s, "not judged: identity" if s == "invalid" else "")],
                               kind) for i, s in enumerate(statuses)}

    fault = cells("fail", "invalid", kind="fault")  # one clause would read as caught: the row is still invalid
    honest = cells("pass", "invalid", kind="honest")
    assert _row_outcome("fault", fault) == "invalid" and _row_outcome("honest", honest) == "invalid"
    doc = judge({"variants": [
        {"name": "bf16", "kind": "fault", "covered": True, "description": "d", "outcome": "invalid", "cells": fault},
        {"name": "honest", "kind": "honest", "covered": None, "description": "d", "outcome": "invalid",
         "cells": honest}]})
    assert doc["exit_code"] == 3 and doc["problems"] == []
    assert all("neither a catch nor a pass" in e for e in doc["errors"]) and len(doc["errors"]) == 2


def test_findings_come_first_in_every_rendering():
    from reports import invalid_report

    from promote.report.render import render_comment, render_html, render_junit, render_summary, render_text
    from promote.report.view import annotation_items

    report = invalid_report()
    assert report.invalid and report.exit_code == 3
    text = render_text(report)
    assert text.index("INVALID      prompt [candidate]") < text.index("[numerics] invalid")
    assert "fix: send the eval set's ids as they are" in text
    for markdown in (render_comment(report), render_summary(report)):
        assert markdown.index("| 🚫 invalid | `prompt` | candidate |") < markdown.index("`kl-mean`")
    html = render_html(report)
    assert html.index('<section id="identity">') < html.index('<section id="attention">')
    assert "s|1 **x**" in html and "<h2>Identity: invalid, nothing was judged</h2>" in html
    assert annotation_items(report)[0]["title"] == "promote identity invalid: prompt [candidate]"
    assert 'errors="2"' in render_junit(report)
    round_trip = type(report).from_dict(json.loads(report.to_json()))
    assert round_trip.findings == report.findings and round_trip.invalid


def test_a_live_stage_alone_is_not_judged_when_identity_fails(mini):
    """`--stage runtime`: no offline pass ran, so the checks that need no probe run before the stage; two
    weights files `identity.same` requires equal make the runtime stage `invalid`, never measured."""
    for role, value in (("reference", 1.0), ("candidate", 2.0)):
        save_file({"scale": np.full(4, value, np.float32)}, str(mini.root / f"{role}.safetensors"))
    identity = {"same": ["weights"], "reference": {"weights": "reference.safetensors"},
                "candidate": {"weights": "candidate.safetensors"}}
    path = mini.contract(extra={"identity": identity, "runtime": {"warmup": 0, "repeats": 1, "clauses": [
        {"id": "errors", "metric": "error_rate", "max": 0}]}})
    result = invoke("check", str(path), "--stage", "runtime", "--format", "json")
    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)
    stage = next(s for s in report["stages"] if s["name"] == "runtime")
    assert stage["status"] == "invalid" and stage["details"] == {}
    assert report["verdict"] == "invalid" and report["identity"]["probe_samples"] == 0
    assert report["identity"]["checked"] == [  # on what the kernels declare
        "vocabulary", "prompt", "fingerprint", "value_semantics", "sampling"]
    assert report["identity"]["findings"][0]["check"] == "fingerprint"


def test_shards_carry_an_invalid_identity_into_the_merged_report(tmp_path):
    """`check --shard I/N` then `merge`: each shard checks its first batch; the merged run is invalid too."""
    from promote.run import run_merge, write_shard

    path = project(tmp_path, candidate="build_wide")
    partials = [tmp_path / f"part{i}" for i in range(2)]
    for i, out in enumerate(partials):
        assert write_shard(str(path), i, 2, out) == 3
    merged = run_merge(partials)
    assert merged.invalid and merged.exit_code == 3
    assert [f.check for f in merged.findings] == ["vocabulary"]
    assert all(c.status == "invalid" for s in merged.stages for c in s.clauses)
    honest = project(tmp_path / "honest", candidate="build") if (tmp_path / "honest").mkdir() is None else None
    for i, out in enumerate(partials):
        assert write_shard(str(honest), i, 2, out) == 0
    merged = run_merge(partials)
    assert merged.verdict == "pass" and merged.findings == [] and merged.identity.probe_samples == 4


def test_a_registered_check_runs_before_any_metric_and_can_make_the_run_invalid(tmp_path):
    """The route value-semantics, sampling and plug-in checks take: register an IdentityCheck; it reads the
    probe's outputs (here: both sides' logits widths) and its invalid finding stops the run."""
    from promote.identity.api import IDENTITY_CHECKS, IdentityCheck, IdentityInputs

    seen: list[IdentityInputs] = []

    def planted(inputs: IdentityInputs) -> list[Finding]:
        seen.append(inputs)
        return [Finding("planted", "invalid", "candidate", "planted mismatch", "remove the plant",
                        {"width": int(inputs.candidate.outputs.logits.shape[-1])})]

    with IDENTITY_CHECKS.registered("planted", IdentityCheck("planted", planted, needs_probe=True)):
        result, report = run(project(tmp_path))
    assert result.exit_code == 3, result.output
    assert_not_judged(report)
    assert report["identity"]["checked"][-1] == "planted" and invalid_findings(report)[0]["evidence"] == {"width": 16}
    [inputs] = seen
    assert inputs.probe is not None and len(inputs.probe.samples) == 4 and inputs.reference.vocab == 16
    assert inputs.reference.kind == inputs.candidate.kind == "torch"


def test_a_kernel_kind_declares_which_checks_apply():
    """`KernelKind.identity`: a kind that supports only fingerprints gets the others listed as not checked."""
    from promote.contract.identity_spec import IdentitySpec
    from promote.contract.kinds import KINDS, KernelKind
    from promote.identity.api import IDENTITY_CHECKS, IdentityInputs, SideFacts
    from promote.identity.runner import applies

    sides = {role: SideFacts(role=role, kind="toy-fp", label=role) for role in ("reference", "candidate")}
    inputs = IdentityInputs(spec=IdentitySpec(), task="causal-lm", evalset=None, probe=None, **sides)
    with KINDS.registered("toy-fp", KernelKind(None, frozenset(), identity=frozenset({"fingerprint"}))):
        assert applies(IDENTITY_CHECKS.get("fingerprint"), inputs) is None
        assert applies(IDENTITY_CHECKS.get("vocabulary"), inputs) == (
            "kernel kind `toy-fp` (reference) declares no `vocabulary` identity check")
