"""`launch:` on an `openai` kernel with a small real HTTP server (tests/launch_server.py): the server is
started on a free loopback port, waited for, stopped by PID on every way out (result, error,
SIGTERM), its per-job log removed or kept; a server that dies mid-run is reported as dead with its
log's tail; a launched bf16 vLLM on an AMX host refuses 3/4-token samples before sending any.
Real vLLM launches: tests/test_vllm_launch.py."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from promote.cli import cli
from promote.contract.kernel_specs import LaunchSpec, OpenAIKernelSpec
from promote.errors import UsageError
from promote.kernels import launch
from promote.kernels.openai_launch import refuse_amx_short_prompts

HERE = Path(__file__).resolve().parent
SERVER = HERE / "launch_server.py"


def contract(mini, mode: str, *, lengths: list[int] | None = None, **launch_extra) -> Path:
    """The mini project's contract with a launched candidate; ``lengths`` rewrites the eval set."""
    if lengths:
        lines = [json.dumps({"id": f"s{i}", "input_ids": [(i + t) % 16 for t in range(n)]})
                 for i, n in enumerate(lengths)]
        (mini.root / "eval.jsonl").write_text("\n".join(lines) + "\n")
    path = mini.contract(candidate="build")
    doc = yaml.safe_load(path.read_text())
    doc["candidate"] = {"kind": "openai", "model": "fake", "concurrency": 1, "retries": 1, "backoff_s": 0.05,
                        "timeout_s": 20, "launch": {"command": [sys.executable, str(SERVER), "{port}", mode],
                                                    "log_dir": str(mini.root / "logs"), "timeout_s": 30,
                                                    **launch_extra}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def check(path: Path, *args: str):
    return CliRunner().invoke(cli, ["check", str(path), "--no-progress", *args], catch_exceptions=False)


def started_pid(stderr: str) -> int:
    return int(re.search(r"server \(pid (\d+)\)", stderr).group(1))


def test_launched_server_runs_the_check_and_is_stopped_with_its_log_removed(mini):
    result = check(contract(mini, "ok"))
    assert result.exit_code == 1, result.output  # uniform answers vs the mini model: a real, failing comparison
    pid = started_pid(result.stderr)
    assert not launch.alive(pid)
    assert list((mini.root / "logs").iterdir()) == []  # log and pid file of this job removed


def test_keep_log_keeps_the_per_job_log(mini):
    result = check(contract(mini, "ok", keep_log=True))
    pid = started_pid(result.stderr)
    logs = list((mini.root / "logs").glob("promote-candidate-*.log"))
    assert len(logs) == 1 and str(pid) not in logs[0].name  # named by promote's pid and the port, per job
    assert "serving on 127.0.0.1:" in logs[0].read_text()
    assert not list((mini.root / "logs").glob("*.pid"))


def test_server_that_exits_before_health_is_exit_3_with_its_log(mini):
    result = check(contract(mini, "exit"))
    assert result.exit_code == 3, result.output
    assert "exited with code 7" in result.stderr and "refusing to start: planted exit" in result.stderr
    assert list((mini.root / "logs").glob("*.log"))  # kept: the server failed


def test_server_never_healthy_times_out(mini):
    result = check(contract(mini, "never-healthy", timeout_s=3))
    assert result.exit_code == 3, result.output
    assert "did not answer /health with 200 within 3 s" in result.stderr
    assert not launch.alive(started_pid(result.stderr))


def test_missing_program_is_a_usage_error(mini):
    path = contract(mini, "ok")
    doc = yaml.safe_load(path.read_text())
    (mini.root / "model").mkdir()
    (mini.root / "model" / "config.json").write_text("{}")
    doc["candidate"]["launch"] = {"vllm": "model", "python": str(mini.root / "no-such-python")}
    path.write_text(yaml.safe_dump(doc))
    result = check(path)
    assert result.exit_code == 2, result.output
    assert "not found or not executable" in result.stderr and "tools/vllm_env.sh" in result.stderr


def test_url_given_means_nothing_is_launched(mini):
    path = contract(mini, "ok")
    doc = yaml.safe_load(path.read_text())
    doc["candidate"]["url"] = "http://127.0.0.1:9/v1"  # discard port: nothing listens
    path.write_text(yaml.safe_dump(doc))
    result = check(path)
    assert result.exit_code == 3, result.output
    assert "started the candidate server" not in result.stderr
    assert "http://127.0.0.1:9/v1" in result.stderr


def test_no_url_and_no_launch_is_a_located_validate_error(mini):
    path = contract(mini, "ok")
    doc = yaml.safe_load(path.read_text())
    del doc["candidate"]["launch"]
    path.write_text(yaml.safe_dump(doc))
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2 and "candidate.url" in result.output and "launch" in result.output


def test_server_dying_mid_run_is_reported_dead_with_its_log_tail(mini):
    result = check(contract(mini, "die-short", lengths=[6, 7, 3, 8]))
    assert result.exit_code == 3, result.output
    message = result.stderr
    assert "stopped answering" in message and "it died or was stopped" in message
    assert "cannot connect" not in message.split("stopped answering")[0]  # never reported as a plain refusal
    assert "This prompt has 3 tokens" in message or "Unanswered when it died: `s2` (3 tokens)" in message
    assert "exited with code -4 (SIGILL)" in message
    assert "Illegal instruction (a 3-token prompt)" in message  # the log's tail
    assert list((mini.root / "logs").glob("*.log"))  # kept


def test_sigterm_stops_promote_and_the_launched_server(mini, tmp_path):
    path = contract(mini, "hang")  # healthy, then the probe never gets an answer
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "promote.cli", "check", str(path), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    pid_files: list[Path] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not pid_files:
        pid_files = list((mini.root / "logs").glob("*.pid")) if (mini.root / "logs").exists() else []
        time.sleep(0.2)
    assert pid_files, "the server was never started"
    server_pid = int(pid_files[0].read_text().split()[0])
    time.sleep(2.0)  # healthy by now; the probe hangs
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and launch.alive(server_pid):
        time.sleep(0.1)
    assert not launch.alive(server_pid)
    assert not pid_files[0].exists() and not list((mini.root / "logs").glob("*.log"))  # a signal: no failure


CPUINFO_AMX = "processor : 0\nflags : fpu avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
CPUINFO_NO_AMX = "processor : 0\nflags : fpu avx512f avx512_bf16 avx512_fp16\n"


class S:
    def __init__(self, sid: str, n: int) -> None:
        self.id, self.input_ids = sid, list(range(n))


def spec(dtype: str) -> OpenAIKernelSpec:
    return OpenAIKernelSpec(kind="openai", url="", model="m",
                            launch=LaunchSpec(vllm=Path("/nonexistent"), vllm_display="m", dtype=dtype))


def test_bf16_launch_on_amx_host_refuses_3_and_4_token_samples():
    samples = [S("long", 24), S("three", 3), S("four", 4)]
    with pytest.raises(UsageError) as err:
        refuse_amx_short_prompts(spec("bfloat16"), "candidate", samples, cpuinfo=CPUINFO_AMX)
    text = str(err.value)
    assert "`three` (3 tokens)" in text and "`four` (4 tokens)" in text and "`long`" not in text
    assert "does not alter prompts" in text and "float32" in text


@pytest.mark.parametrize(("dtype", "cpuinfo", "lengths"), [
    ("bfloat16", CPUINFO_NO_AMX, [3, 4]),   # no AMX: the vec kernel takes every length
    ("float32", CPUINFO_AMX, [3, 4]),       # fp32 never takes the AMX path
    ("bfloat16", CPUINFO_AMX, [2, 5, 24]),  # no fatal length
])
def test_amx_refusal_only_where_the_bug_bites(dtype, cpuinfo, lengths):
    refuse_amx_short_prompts(spec(dtype), "candidate", [S(f"s{n}", n) for n in lengths], cpuinfo=cpuinfo)


def test_host_has_amx_reads_the_flags_line():
    assert launch.host_has_amx(CPUINFO_AMX) and not launch.host_has_amx(CPUINFO_NO_AMX)
    assert not launch.host_has_amx("flags : amx_tilex\n")


def test_server_at_a_url_dying_is_reported_with_its_server_log(mini):
    """A server started apart (as tools/vllm_server.py does) named by `url`, its log by `server_log`."""
    port = launch.free_port()
    logs = mini.root / "apart"
    server = launch.spawn([sys.executable, str(SERVER), str(port), "die-short"], port=port, job="apart", log_dir=logs)
    try:
        launch.wait_healthy(server, timeout=30)
        path = contract(mini, "ok", lengths=[6, 4, 8])
        doc = yaml.safe_load(path.read_text())
        doc["candidate"].pop("launch")
        doc["candidate"].update(url=server.url, server_log=str(server.log))
        path.write_text(yaml.safe_dump(doc))
        result = check(path)
    finally:
        server.stop(keep_log=False)
    assert result.exit_code == 3, result.output
    assert f"at {server.url}/completions" in result.stderr
    assert "answered 2 requests, then stopped answering" in result.stderr  # the probe and `s0`
    assert "This prompt has 4 tokens" in result.stderr
    assert "Illegal instruction (a 4-token prompt)" in result.stderr  # quoted from `server_log`
