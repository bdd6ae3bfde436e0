"""The `openai` kernel against a REAL vLLM server (session fixture, tests/conftest.py), with faults
planted by a reverse proxy in front of it (tests/http_proxy.py): the issue-11 bad-input checklist."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from promote.cli import cli

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "tiny_llama"


def contract(tmp_path: Path, url: str, *, limit: int = 4, clauses: list | None = None, **candidate) -> Path:
    doc = {
        "version": 1, "name": "vllm-test",
        "reference": {"kind": "torch", "model": str(EXAMPLE / "model.py") + ":build", "precision": "fp32"},
        "candidate": {"kind": "openai", "url": url, "model": "tiny-llama", "retries": 2, "backoff_s": 0.05,
                      **candidate},
        "data": {"path": str(EXAMPLE / "eval.jsonl"), "limit": limit},
        "numerical": {"clauses": clauses or [{"id": "drift", "metric": "logit_drift", "stat": "max", "max": 5e-4},
                                             {"id": "log-ratio", "metric": "abs_log_ratio", "stat": "max",
                                              "max": 1e-3}]},
    }
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def check(path: Path, tmp_path: Path, *extra: str):
    report = tmp_path / "report.json"
    result = CliRunner().invoke(cli, ["check", str(path), "--no-progress", "--output", f"json={report}", *extra],
                                catch_exceptions=False)
    data = json.loads(report.read_text()) if report.exists() else None
    return result, data


@pytest.fixture
def proxy(vllm_proxy):
    vllm_proxy.reset()
    yield vllm_proxy
    vllm_proxy.reset()


def test_full_vocabulary_through_http_is_exact_and_passes(vllm_fp32, tmp_path):
    result, report = check(contract(tmp_path, vllm_fp32.url), tmp_path)
    assert result.exit_code == 0, result.output
    cand = report["kernels"]["candidate"] if "kernels" in report else None
    text = json.dumps(report)
    assert '"exact_metrics": "all"' in text and '"values": "raw logits"' in text, cand


def test_topk_mode_reports_bounds(vllm_fp32, tmp_path):
    path = contract(tmp_path, vllm_fp32.url, top_k=5,
                    clauses=[{"id": "log-ratio", "metric": "abs_log_ratio", "stat": "max", "max": 1e-3}])
    result, report = check(path, tmp_path)
    # raw_logits mode cannot be normalised from a top-k answer: explained, exit 2
    assert result.exit_code == 2, result.output
    assert "raw logits" in result.output and "top_k: all" in result.output


def test_server_down_names_the_url(tmp_path):
    url = "http://127.0.0.1:9/v1"
    result, _ = check(contract(tmp_path, url), tmp_path)
    assert result.exit_code == 3, result.output
    assert "127.0.0.1:9/v1/completions" in result.output and "cannot connect" in result.output
    assert "Traceback" not in result.output


def test_500s_then_recovery_counts_retries(proxy, tmp_path):
    proxy.faults.fail_first, proxy.faults.retry_after = 2, "0"
    result, report = check(contract(tmp_path, proxy.url), tmp_path)
    assert result.exit_code == 0, result.output
    assert '"retries": 2' in json.dumps(report)


def test_429_exhausting_retries_is_exit_3(proxy, tmp_path):
    proxy.faults.fail_first, proxy.faults.fail_status, proxy.faults.retry_after = 100, 429, "0"
    result, _ = check(contract(tmp_path, proxy.url), tmp_path)
    assert result.exit_code == 3, result.output
    assert "HTTP 429" in result.output and "after 2 retries" in result.output


def test_malformed_json(proxy, tmp_path):
    proxy.faults.malformed = True
    result, _ = check(contract(tmp_path, proxy.url), tmp_path)
    assert result.exit_code == 3, result.output
    assert "not JSON" in result.output


def test_no_prompt_logprobs_names_feature_and_api(proxy, tmp_path):
    proxy.faults.drop_prompt_logprobs = True
    result, _ = check(contract(tmp_path, proxy.url), tmp_path)
    assert result.exit_code == 3, result.output
    assert "prompt_logprobs" in result.output and "api: openai" in result.output


def test_openai_echo_route_on_the_real_server(vllm_fp32, tmp_path):
    result, _ = check(contract(tmp_path, vllm_fp32.url, api="openai"), tmp_path)
    assert result.exit_code == 0, result.output


def test_token_mismatch(proxy, tmp_path):
    proxy.faults.shift_token = True
    result, _ = check(contract(tmp_path, proxy.url), tmp_path)
    assert result.exit_code == 3, result.output
    assert "token mismatch" in result.output


def test_timeout(proxy, tmp_path):
    proxy.faults.hang_s = 1.5
    result, _ = check(contract(tmp_path, proxy.url, timeout_s=0.5, retries=0), tmp_path)
    assert result.exit_code == 3, result.output
    assert "no complete answer within 0.5 s (the total deadline" in result.output


def test_api_key_sent_and_never_printed(proxy, tmp_path, monkeypatch):
    key = "sk-test-very-secret-4242"
    monkeypatch.setenv("TINY_LLAMA_API_KEY", key)
    proxy.faults.api_key = key
    path = contract(tmp_path, proxy.url, api_key_env="TINY_LLAMA_API_KEY")
    result, _ = check(path, tmp_path, "--format", "markdown")
    assert result.exit_code == 0, result.output
    assert f"Bearer {key}" in proxy.faults.seen_auth
    outputs = result.output + (tmp_path / "report.json").read_text()
    assert key not in outputs
    proxy.faults.api_key = "another-key-entirely"  # the server refuses: the message still hides ours
    result, _ = check(path, tmp_path)
    assert result.exit_code != 0 and key not in result.output
    assert key not in (tmp_path / "report.json").read_text()


def test_missing_api_key_env(vllm_fp32, tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE_KEY", raising=False)
    result, _ = check(contract(tmp_path, vllm_fp32.url, api_key_env="NOT_SET_ANYWHERE_KEY"), tmp_path)
    assert result.exit_code == 2, result.output
    assert "NOT_SET_ANYWHERE_KEY" in result.output
