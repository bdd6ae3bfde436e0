"""Value semantics and sampled-token rollouts through `promote check`: each planted mismatch is exit 3
with verdict `invalid` and the finding in the report's identity part, metrics never judged; the honest
pairs pass with their notes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import test_openai_hostile as hostile
import yaml
from click.testing import CliRunner

from promote.cli import cli
from promote.contract.model import load_contract
from promote.data import batches, read_jsonl
from promote.data.rollouts import read_rollouts
from promote.kernels import build_kernel
from promote.kernels.base import host_logits
from promote.kernels.records import write_records
from promote.resources import load_schema
from promote.rl import write_rollouts

DUMP = Path(__file__).resolve().parents[1] / "examples" / "rl_rollouts" / "rollouts" / "honest" / "rollouts.jsonl"
NEUTRAL = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "min_p": 0.0}
DISTRIBUTION = [{"id": "kl-mean", "metric": "kl", "stat": "mean", "max": 1e-6},
                {"id": "osc", "metric": "logit_osc", "stat": "max", "max": 1e-4},
                {"id": "agree", "metric": "argmax_agree", "stat": "mean", "min": 1.0}]
DRIFT = [*DISTRIBUTION, {"id": "drift", "metric": "logit_drift", "stat": "max", "max": 1e-4}]


def check(contract: Path) -> tuple[int, dict]:
    """Exit code and JSON report of `promote check`; the report always valid against its schema."""
    result = CliRunner().invoke(cli, ["check", str(contract), "--format", "json"], catch_exceptions=False)
    report = json.loads(result.stdout)
    jsonschema.validate(report, load_schema("report"))
    return result.exit_code, report


def findings(report: dict, check_name: str) -> list[dict]:
    return [f for f in report["identity"]["findings"] if f["check"] == check_name]


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    peak = z.max(axis=-1, keepdims=True)
    return (z - peak - np.log(np.exp(z - peak).sum(axis=-1, keepdims=True))).astype(np.float32)


def recorded(mini, values: str, clauses: list[dict], **declared) -> Path:
    """The mini model's own outputs over the eval set as the candidate's records (``values``: ``logits``,
    ``logprobs`` or ``tempered``: log-probs at temperature 0.8), the live model as the reference."""
    contract, _ = load_contract(mini.contract("src.yaml"))
    evalset = read_jsonl(contract.data.path)
    batch = next(batches(evalset.samples, len(evalset.samples)))
    with build_kernel(contract.candidate, role="candidate") as kernel:
        logits = host_logits(kernel.run(batch).logits)
    out = {"logits": logits, "logprobs": _log_softmax(logits), "tempered": _log_softmax(logits / 0.8)}[values]
    write_records(mini.root / "cand.safetensors", [s.id for s in evalset.samples], batch.input_ids,
                  batch.scored_mask(), logits=out, **declared)
    doc = yaml.safe_load(mini.contract("rec.yaml", clauses=clauses).read_text())
    doc["candidate"] = {"kind": "records", "path": "cand.safetensors"}
    path = mini.root / "rec.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# --- value semantics -----------------------------------------------------------------------------------

def test_log_probs_against_live_logits_pass_distribution_metrics_with_a_note(mini):
    code, report = check(recorded(mini, "logprobs", DISTRIBUTION, logprobs_mode="raw_logprobs"))
    assert code == 0 and report["verdict"] == "pass"
    notes = findings(report, "value_semantics")
    assert [(f["severity"], f["side"]) for f in notes] == [("note", "both")]
    assert "reference gives raw logits, the candidate log-probs" in notes[0]["message"]


def test_log_probs_against_live_logits_with_a_logit_drift_clause_is_invalid(mini):
    code, report = check(recorded(mini, "logprobs", DRIFT, logprobs_mode="raw_logprobs"))
    assert code == 3 and report["verdict"] == "invalid"
    bad = [f for f in findings(report, "value_semantics") if f["severity"] == "invalid"]
    assert [f["side"] for f in bad] == ["both"] and "logit_drift" in bad[0]["message"]
    assert "logit_osc" in bad[0]["fix"]
    clauses = [c for s in report["stages"] for c in s["clauses"]]
    assert clauses and all(c["status"] == "invalid" for c in clauses)  # never judged


def test_processed_log_probs_against_a_live_model_are_invalid(mini):
    code, report = check(recorded(mini, "tempered", DISTRIBUTION, logprobs_mode="processed_logprobs"))
    assert code == 3 and report["verdict"] == "invalid"
    bad = [f for f in findings(report, "value_semantics") if f["severity"] == "invalid"]
    assert [f["side"] for f in bad] == ["candidate"] and "--logprobs-mode raw_logprobs" in bad[0]["fix"]


def test_a_declaration_the_values_contradict_is_invalid(mini):
    code, report = check(recorded(mini, "logits", DISTRIBUTION, logprobs_mode="raw_logprobs"))
    assert code == 3 and report["verdict"] == "invalid"
    bad = [f for f in findings(report, "value_semantics") if f["severity"] == "invalid"]
    assert [f["side"] for f in bad] == ["candidate"] and "declares `raw_logprobs`" in bad[0]["message"]


def test_honest_logits_records_give_no_value_finding(mini):
    code, report = check(recorded(mini, "logits", DRIFT, logprobs_mode="raw_logits"))
    assert code == 0 and findings(report, "value_semantics") == []


# --- sampled-token rollouts ----------------------------------------------------------------------------

RL = """version: 1
name: rl-identity
reference: {kind: records, path: trainer.safetensors}
candidate: {kind: records, path: engine.safetensors}
data: {path: eval.jsonl, task: causal-lm}
numerical:
  clauses:
    - {id: k3, metric: k3, stat: mean, max: 1.0e-3}
    - {id: tail, metric: abs_log_ratio, stat: p99, max: 0.1}
"""


def rl_run(root: Path, rollouts=None, **kwargs) -> tuple[int, dict]:
    write_rollouts(rollouts if rollouts is not None else read_rollouts(DUMP), root, **kwargs)
    (root / "rl.yaml").write_text(RL)
    return check(root / "rl.yaml")


def test_honest_rollouts_with_the_same_settings_pass(tmp_path):
    code, report = rl_run(tmp_path, sampling={"engine": NEUTRAL, "trainer": NEUTRAL})
    assert code == 0 and report["verdict"] == "pass" and findings(report, "sampling") == []


def test_a_truncated_sampler_is_noted_not_blocked(tmp_path):
    nucleus = {**NEUTRAL, "top_p": 0.9}
    code, report = rl_run(tmp_path, sampling={"engine": nucleus, "trainer": nucleus})
    assert code == 0
    notes = findings(report, "sampling")
    assert [(f["severity"], f["side"]) for f in notes] == [("note", "both")]
    assert "not the importance ratio" in notes[0]["message"]


def test_different_sampler_temperatures_are_invalid(tmp_path):
    code, report = rl_run(tmp_path, sampling={"engine": {**NEUTRAL, "temperature": 0.7}, "trainer": NEUTRAL})
    assert code == 3 and report["verdict"] == "invalid"
    bad = findings(report, "sampling")
    assert [(f["severity"], f["side"]) for f in bad] == [("invalid", "both")]
    assert bad[0]["evidence"]["differ"] == {"temperature": [1.0, 0.7]}


@pytest.mark.parametrize("plant", ["shift", "mask", "longer"])
def test_misaligned_trainer_rows_are_invalid(tmp_path, plant):
    rollouts = read_rollouts(DUMP)
    r = rollouts[3]
    ids, mask, lps = r.response_ids, list(r.response_mask), r.trainer_logprobs
    if plant == "shift":
        ids = (*ids[1:], ids[-1])
    elif plant == "mask":
        mask[5] = False
    else:
        ids, mask, lps = (*ids, 7), [*mask, True], (*lps, -1.0)
    rollouts[3] = dataclasses.replace(r, trainer_response_ids=ids, trainer_response_mask=tuple(mask),
                                      trainer_logprobs=lps)
    code, report = rl_run(tmp_path, rollouts)
    assert code == 3 and report["verdict"] == "invalid"
    bad = [f for f in findings(report, "sampling") if f["severity"] == "invalid"]
    kind = {"shift": "ids", "mask": "mask", "longer": "length"}[plant]
    assert [f["evidence"]["kind"] for f in bad] == [kind]
    assert bad[0]["evidence"]["first"][0]["id"] == r.id


# --- a server in vLLM's `raw_logits` mode against one giving log-probs (real HTTP) -------------------

def _raw_logits(request) -> dict:
    """vLLM with `--logprobs-mode raw_logits`: the same distribution as the reference's, un-normalised."""
    answer = hostile.vllm_answer(json.loads(request.body)["prompt"])
    for row in answer["choices"][0]["prompt_logprobs"][1:]:
        for entry in row.values():
            entry["logprob"] += 7.25  # the log-normaliser a raw logit carries
    return answer


@pytest.mark.parametrize("clauses", ["drift", "distribution"])
def test_a_raw_logits_server_against_a_log_prob_server(tmp_path, clauses):
    from hostile_http import Hostile, computed

    with Hostile() as reference, Hostile() as candidate:
        reference.route("/v1/completions", computed(hostile.good))
        candidate.route("/v1/completions", computed(_raw_logits))
        path = hostile.contract(tmp_path, reference.url("/v1"), candidate.url("/v1"))
        if clauses == "distribution":
            doc = yaml.safe_load(path.read_text())
            doc["numerical"]["clauses"] = [{"id": "osc", "metric": "logit_osc", "stat": "max", "max": 1e-4},
                                           {"id": "kl", "metric": "kl", "stat": "max", "max": 1e-9}]
            path.write_text(yaml.safe_dump(doc))
        result, report = hostile.check(path, tmp_path)
    found = findings(report, "value_semantics")
    if clauses == "drift":
        assert result.exit_code == 3 and report["verdict"] == "invalid"
        assert [(f["severity"], f["side"]) for f in found] == [("invalid", "both")]
        assert "the reference gives log-probs, the candidate raw logits" in found[0]["message"]
        assert "record the candidate as log-probs" in found[0]["fix"]
    else:  # the same distributions: logit_osc and KL are exact across the two spaces
        assert result.exit_code == 0 and report["verdict"] == "pass"
        assert [(f["severity"], f["side"]) for f in found] == [("note", "both")]
