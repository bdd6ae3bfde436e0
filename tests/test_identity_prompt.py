"""Issue 23, prompt identity through HTTP: a server that prepends a BOS scores other ids than the eval set's;
the `openai` kernel's echo check is folded into the identity check (`invalid`, exit 3, the candidate named,
the fix given). The servers are tests/hostile_http.py's, answering in vLLM's shape."""

from __future__ import annotations

import json

from hostile_http import Hostile, Request, computed
from test_openai_hostile import check, contract, good, vllm_answer


def with_bos(request: Request) -> dict:
    """vLLM with a BOS added: one more prompt entry, and `prompt_token_ids` saying what it scored."""
    ids = json.loads(request.body)["prompt"]
    answer = vllm_answer([1, *ids])
    answer["choices"][0]["prompt_token_ids"] = [1, *ids]
    return answer


def honest(request: Request) -> dict:
    ids = json.loads(request.body)["prompt"]
    answer = good(request)
    answer["choices"][0]["prompt_token_ids"] = list(ids)
    return answer


def test_a_server_that_adds_a_bos_is_invalid_naming_the_side_and_the_fix(tmp_path):
    with Hostile() as reference, Hostile() as candidate:
        reference.route("/v1/completions", computed(honest))
        candidate.route("/v1/completions", computed(with_bos))
        result, report = check(contract(tmp_path, reference.url("/v1"), candidate.url("/v1")), tmp_path)
    assert result.exit_code == 3, result.output
    assert report["verdict"] == "invalid"
    [finding] = report["identity"]["findings"]
    assert (finding["check"], finding["severity"], finding["side"]) == ("prompt", "invalid", "candidate")
    assert "prepended 1 id(s) [1] (a BOS token)" in finding["message"]
    assert "add_special_tokens: false" in finding["fix"]
    assert all(c["status"] == "invalid" for c in report["stages"][0]["clauses"])


def test_an_honest_server_pair_has_no_prompt_finding(tmp_path):
    with Hostile() as reference, Hostile() as candidate:
        reference.route("/v1/completions", computed(honest))
        candidate.route("/v1/completions", computed(honest))
        result, report = check(contract(tmp_path, reference.url("/v1"), candidate.url("/v1")), tmp_path)
    assert result.exit_code == 0, result.output
    assert report["identity"]["findings"] == [] and "prompt" in report["identity"]["checked"]
    assert report["identity"]["fingerprints"]["candidate"]["server"] == {"model": None, "version": None}
