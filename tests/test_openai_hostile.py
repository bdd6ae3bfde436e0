"""Issue 19 items 6, 11, 15 and 18 through `promote check`: two `kind: openai` kernels whose servers are the
hostile server of tests/hostile_http.py answering in vLLM's shape (a uniform 512-token distribution),
one of them misbehaving. Every failure is exit 2 or 3 with the URL named and a report — never an
internal error."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hostile_http import Hostile, Request, computed, json_reply, redirect, status
from test_vllm_kernel import check as check_contract

from promote.cli import cli
from promote.kernels import openai_api as apis

REPO = Path(__file__).resolve().parents[1]
EVAL = REPO / "examples" / "tiny_llama" / "eval.jsonl"
VOCAB = 512


def vllm_answer(ids: list[int], vocab: int = VOCAB, spell=str) -> dict:
    """Log-probs that differ by position and id (a constant distribution would be `vacuous`)."""
    rows = []
    for t in range(1, len(ids)):
        logits = [math.sin(0.01 * i * t) for i in range(vocab)]
        norm = math.log(math.fsum(math.exp(x) for x in logits))
        rows.append({spell(i): {"logprob": x - norm, "rank": i + 1} for i, x in enumerate(logits)})
    return {"choices": [{"prompt_logprobs": [None, *rows]}]}


def good(request: Request) -> dict:
    return vllm_answer(json.loads(request.body)["prompt"])


@pytest.fixture
def servers():
    with Hostile() as reference, Hostile() as candidate:
        reference.route("/v1/completions", computed(good))
        yield reference, candidate


def contract(tmp_path: Path, reference: str, candidate: str, *, extra: dict | None = None, **cand) -> Path:
    kernel = {"kind": "openai", "model": "m", "retries": 0, "backoff_s": 0.01, "concurrency": 2}
    doc = {"version": 1, "name": "hostile",
           "reference": {**kernel, "url": reference}, "candidate": {**kernel, "url": candidate, **cand},
           "data": {"path": str(EVAL), "limit": 3},
           "numerical": {"clauses": [{"id": "drift", "metric": "logit_drift", "stat": "max", "max": 1e-3}]},
           **(extra or {})}
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def check(path: Path, tmp_path: Path, *extra: str):
    """test_vllm_kernel's `check`, plus: whatever the server did, never an internal error."""
    result, report = check_contract(path, tmp_path, *extra)
    assert "internal error" not in result.output and "Traceback" not in result.output, result.output
    return result, report


def test_the_honest_pair_passes(servers, tmp_path):
    """The fixture itself: both servers answer, the run passes (so the failures below are the faults')."""
    reference, candidate = servers
    candidate.route("/v1/completions", computed(good))
    result, report = check(contract(tmp_path, reference.url("/v1"), candidate.url("/v1")), tmp_path)
    assert result.exit_code == 0, result.output
    assert report["verdict"] == "pass"


@pytest.mark.parametrize("spell", [lambda i: "00" if i == 0 else str(i), lambda i: f" {i}" if i == 1 else str(i),
                                   lambda i: f"+{i}" if i == 1 else str(i), lambda i: "0" if i == 1 else str(i)],
                         ids=["00", "space-1", "plus-1", "duplicate-0"])
def test_misspelled_or_duplicate_ids_are_exit_3(servers, tmp_path, spell):
    """Item 6: `"0"` and `"00"` both read as id 0 and left a column of np.empty memory."""
    reference, candidate = servers
    candidate.route("/v1/completions", computed(lambda r: vllm_answer(json.loads(r.body)["prompt"], spell=spell)))
    result, _ = check(contract(tmp_path, reference.url("/v1"), candidate.url("/v1")), tmp_path)
    assert result.exit_code == 3, result.output
    assert "once, spelled as a plain decimal number" in result.output and candidate.url("/v1") in result.output


@pytest.mark.parametrize("key", ["token_id:-1", "token_id:+1", "token_id: 1", "token_id:01"])
def test_echo_ids_must_be_plain_non_negative_decimals(key):
    body = {"choices": [{"logprobs": {"tokens": ["token_id:5", "token_id:7"], "token_logprobs": [None, -0.1],
                                      "top_logprobs": [None, {"token_id:7": -0.1, key: -2.0}]}}]}
    with pytest.raises(apis.ShapeError, match="plain decimal"):
        apis.parse("openai", body, [5, 7], 2)


@pytest.mark.parametrize("body", [
    {"choices": [{"logprobs": {"tokens": ["token_id:5", "token_id:7"], "top_logprobs": [None]}}]},
    {"choices": [{"logprobs": {"tokens": 5, "top_logprobs": []}}]},
    {"meta_info": {"input_token_logprobs": [[None, 5], [-0.5]], "input_top_logprobs": [None, "x"]}},
    {"meta_info": {"input_token_logprobs": [[None, 5], [-0.5, 7]], "input_top_logprobs": [None, [3]]}},
], ids=["echo-short", "echo-tokens-int", "sglang-short-row", "sglang-bad-top"])
def test_malformed_echo_and_sglang_shapes_are_shape_errors(body):
    """Item 11: IndexError/AttributeError/TypeError deep inside became internal errors."""
    api = "openai" if "choices" in body else "sglang"
    with pytest.raises(apis.ShapeError):
        apis.parse(api, body, [5, 7], 2)


def test_a_vocabulary_that_grows_after_the_probe_is_exit_3(servers, tmp_path):
    reference, candidate = servers
    served = []

    def growing(request: Request) -> dict:
        served.append(1)
        return vllm_answer(json.loads(request.body)["prompt"], VOCAB if len(served) == 1 else VOCAB + 1)

    candidate.route("/v1/completions", computed(growing))
    result, report = check(contract(tmp_path, reference.url("/v1"), candidate.url("/v1")), tmp_path)
    assert result.exit_code == 3 and "vocabulary changed" in result.output, result.output


def close_mid_body(conn: socket.socket, request: Request) -> None:
    body = json.dumps(good(request)).encode()
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                 + body[: len(body) // 2])
    conn.shutdown(socket.SHUT_RDWR)


close_mid_body.closes = True  # type: ignore[attr-defined]


def test_a_connection_closed_mid_body_is_exit_3_naming_the_url_with_a_report(servers, tmp_path):
    reference, candidate = servers
    probe = {"n": 0}

    def answer(conn: socket.socket, request: Request) -> None:
        probe["n"] += 1
        (computed(good) if probe["n"] == 1 else close_mid_body)(conn, request)

    candidate.route("/v1/completions", answer)
    result, report = check(contract(tmp_path, reference.url("/v1"), candidate.url("/v1")), tmp_path)
    assert result.exit_code == 3, result.output
    assert candidate.url("/v1/completions") in result.output
    assert report is not None and report["verdict"] != "pass"


def test_in_the_runtime_stage_a_connection_closed_mid_body_counts_as_an_error(servers, tmp_path):
    """Item 11: stage 3 counts it in `error_rate` like a timeout; before, it aborted the whole run."""
    reference, candidate = servers
    first = json.loads(EVAL.read_text().splitlines()[1])["input_ids"]

    def answer(conn: socket.socket, request: Request) -> None:
        broken = json.loads(request.body)["prompt"] == first
        (close_mid_body if broken else computed(good))(conn, request)

    candidate.route("/v1/completions", answer)
    runtime = {"runtime": {"warmup": 0, "repeats": 1, "concurrency": [1],
                           "clauses": [{"id": "errors", "metric": "error_rate", "max": 0}]}}
    result, report = check(contract(tmp_path, reference.url("/v1"), candidate.url("/v1"), extra=runtime),
                           tmp_path, "--stage", "runtime")
    assert result.exit_code == 1, result.output
    stage = next(s for s in report["stages"] if s["name"] == "runtime")
    assert stage["clauses"][0]["status"] == "fail"
    measured = stage["details"]["runtime"]["measured"]["candidate"]["levels"]["1"]
    assert measured["errors"] >= 1 and measured["requests"] > measured["errors"]


def test_another_origins_404_is_not_blamed_on_the_api(servers, tmp_path):
    """Item 18: the message names where the redirect led, not "does the server speak api: vllm"."""
    reference, candidate = servers
    with Hostile() as elsewhere:
        elsewhere.route("/gone", status(404, b'{"detail": "Not Found"}'))
        candidate.route("/v1/completions", redirect(elsewhere.url("/gone"), 307))
        result, _ = check(contract(tmp_path, reference.url("/v1"), candidate.url("/v1")), tmp_path)
    assert result.exit_code == 2
    assert f"redirected to {elsewhere.url('/gone')}" in result.output and "does the server speak" not in result.output


def test_the_api_key_does_not_follow_a_redirect_through_the_kernel(servers, tmp_path, monkeypatch):
    reference, candidate = servers
    monkeypatch.setenv("CAND_API_KEY", "sk-kernel-canary-424242")
    with Hostile() as elsewhere:
        elsewhere.route("/v1/completions", json_reply({}))
        candidate.route("/v1/completions", redirect(elsewhere.url("/v1/completions"), 307))
        result, _ = check(contract(tmp_path, reference.url("/v1"), candidate.url("/v1"),
                                   api_key_env="CAND_API_KEY"), tmp_path)
    assert result.exit_code == 3 and "another origin" in result.output
    assert elsewhere.log == [] and "sk-kernel-canary-424242" not in result.output


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/v1", "http://"])
def test_kind_openai_takes_http_urls_only(tmp_path, url):
    """Item 15: urllib served file:// — the start of any local file landed in the report."""
    path = contract(tmp_path, "http://127.0.0.1:9/v1", url)
    result = CliRunner().invoke(cli, ["validate", str(path)], catch_exceptions=False)
    assert result.exit_code == 2 and "not an http:// or https:// URL" in result.output, result.output
    assert "root:" not in result.output
