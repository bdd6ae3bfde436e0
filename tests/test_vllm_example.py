"""examples/tiny_llama on REAL vLLM servers: the honest fp32 server passes the shipped contract, a
planted serving config fault (wrong rope_theta) is blocked by stage 1 through HTTP, and a bf16 server
with vLLM's default top-20 cap passes the top-k contract and explains what it refuses."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import start_vllm

from promote.cli import cli

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "tiny_llama"


def check(contract: Path, url: str, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PROMOTE_VLLM_URL", url)
    report = tmp_path / "report.json"
    result = CliRunner().invoke(cli, ["check", str(contract), "--no-progress", "--output", f"json={report}"],
                                catch_exceptions=False)
    return result, (json.loads(report.read_text()) if report.exists() else None)


def statuses(report: dict) -> dict[str, str]:
    return {c["id"]: c["status"] for s in report["stages"] for c in s["clauses"]}


def test_honest_fp32_server_passes_near_its_floor(vllm_fp32, tmp_path, monkeypatch):
    result, report = check(EXAMPLE / "vllm_fp32.yaml", vllm_fp32.url, tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    drift = next(c for s in report["stages"] for c in s["clauses"] if c["id"] == "drift-max")
    assert drift["observed"] < 1e-4  # measured ~7e-6: fp32 against fp32, kernel order only


@pytest.fixture(scope="module")
def vllm_wrong_rope(request, tmp_path_factory):
    sys.path.insert(0, str(EXAMPLE))
    try:
        from faults import wrong_rope
    finally:
        sys.path.remove(str(EXAMPLE))
    folder = wrong_rope(tmp_path_factory.mktemp("fault") / "model")
    return start_vllm(request, folder, dtype="float32")


def test_serving_config_fault_is_blocked_through_http(vllm_wrong_rope, tmp_path, monkeypatch):
    result, report = check(EXAMPLE / "vllm_fp32.yaml", vllm_wrong_rope.url, tmp_path, monkeypatch)
    assert result.exit_code == 1, result.output
    got = statuses(report)
    assert got["drift-max"] == "fail" and got["kl-max"] == "fail", got


@pytest.fixture(scope="module")
def vllm_bf16_top20(request):
    return start_vllm(request, EXAMPLE / "model", dtype="bfloat16", max_logprobs=20, logprobs_mode="raw_logprobs")


def test_bf16_top20_contract_passes_on_exact_metrics(vllm_bf16_top20, tmp_path, monkeypatch):
    result, report = check(EXAMPLE / "vllm_bf16.yaml", vllm_bf16_top20.url, tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    assert "certified bounds" in json.dumps(report)  # the report says which metrics are bounds


def _variant(tmp_path: Path, top_k) -> Path:
    doc = yaml.safe_load((EXAMPLE / "vllm_bf16.yaml").read_text())
    doc["candidate"]["top_k"] = top_k
    doc["reference"]["model"] = str(EXAMPLE / "model.py") + ":build"
    doc["data"] = {"path": str(EXAMPLE / "eval.jsonl"), "limit": 2}
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("top_k", ["all", 50])
def test_top_k_above_max_logprobs_is_explained(vllm_bf16_top20, tmp_path, monkeypatch, top_k):
    result, _ = check(_variant(tmp_path, top_k), vllm_bf16_top20.url, tmp_path, monkeypatch)
    assert result.exit_code == 2, result.output
    assert "HTTP 400" in result.output and "--max-logprobs -1" in result.output
    assert "Traceback" not in result.output
