"""`launch:` with REAL vLLM: `promote check examples/tiny_llama/vllm_fp32.yaml` runs alone (no server
started beforehand, no URL exported): promote starts the server, the contract passes, and the server
is stopped by PID with its per-job log removed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import vllm_python_or_skip

from promote.cli import cli
from promote.kernels import launch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiny_llama"


@pytest.fixture
def vllm_python(monkeypatch) -> str:
    python = vllm_python_or_skip()
    monkeypatch.setenv("PROMOTE_VLLM_PYTHON", python)
    monkeypatch.delenv("PROMOTE_VLLM_URL", raising=False)
    return python


def test_fp32_example_runs_alone_and_stops_its_server(vllm_python, tmp_path):
    result = CliRunner().invoke(cli, ["check", str(EXAMPLE / "vllm_fp32.yaml"), "--no-progress"],
                                catch_exceptions=False)
    started = re.search(r"started the candidate server \(pid (\d+)\) at (\S+); log (\S+);", result.stderr)
    assert started, result.stderr
    assert result.exit_code == 0, result.output
    pid, log = int(started.group(1)), Path(started.group(3))
    assert not launch.alive(pid)
    assert not log.exists() and not log.with_suffix(".pid").exists()
    assert "${PROMOTE_VLLM_URL}" not in result.output


def test_runtime_example_passes_on_two_identical_launched_servers(vllm_python, monkeypatch, tmp_path):
    """Issue 25: examples/tiny_llama/runtime.yaml alone launches its candidate and its baseline (two
    identical fp32 servers) and passes: enough request pairs for its bounds to be decided by the noise."""
    monkeypatch.delenv("PROMOTE_BASELINE_URL", raising=False)
    report = tmp_path / "report.json"
    result = CliRunner().invoke(cli, ["check", str(EXAMPLE / "runtime.yaml"), "--stage", "runtime", "--no-progress",
                                      "--output", f"json={report}"], catch_exceptions=False)
    pids = [int(p) for p in re.findall(r"started the \w+ server \(pid (\d+)\)", result.stderr)]
    assert len(pids) == 2, result.stderr
    assert result.exit_code == 0, result.output
    assert not any(launch.alive(pid) for pid in pids)


def test_session_server_whose_engine_died_is_restarted_on_its_port(vllm_fp32):
    """Issue 19 (CI determinism): the fixture proves its server answers before a test uses it and
    restarts one that died, on the same port, so fixtures built on its URL keep working."""
    port, pid, restarts = vllm_fp32.port, vllm_fp32.pid, vllm_fp32.restarts
    launch.stop(pid, timeout=5.0)  # the engine and its server are gone, as after a fatal request
    assert vllm_fp32.answers() is not None
    vllm_fp32.ensure()
    assert vllm_fp32.answers() is None
    assert (vllm_fp32.port, vllm_fp32.restarts) == (port, restarts + 1) and vllm_fp32.pid != pid
