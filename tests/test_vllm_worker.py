"""`kind: vllm` against a hostile stand-in for its worker (tests/fake_vllm_worker.py): every answer is
checked (deadline, size cap, JSON object, facts typed, rows covered, the shared file holding what the
engine reported), every failure is exit 3 naming the cause with the worker's log tail, and the worker is
stopped by PID on every way out. The real engine: tests/test_vllm_inproc.py."""

from __future__ import annotations

import re
import stat
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from promote.cli import cli
from promote.contract.kernel_specs import VLLM_RESERVED_ARGS
from promote.kernels import launch, vllm_worker
from promote.kernels.shared_logits import shared_root

FAKE = Path(__file__).resolve().parent / "fake_vllm_worker.py"


def contract(mini, mode: str, **candidate) -> Path:
    """The mini project's contract with a `kind: vllm` candidate whose interpreter is the fake worker."""
    python = mini.root / "fake-python"
    python.write_text(f"#!{sys.executable}\n" + FAKE.read_text())
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    (mini.root / "model").mkdir(exist_ok=True)
    (mini.root / "model" / "config.json").write_text("{}")
    path = mini.contract(candidate="build")
    doc = yaml.safe_load(path.read_text())
    env = {"FAKE_WORKER_MODE": mode, "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}  # the kernel must force it to 0
    doc["candidate"] = {"kind": "vllm", "model": "model", "python": str(python), "batch_size": 5, "timeout_s": 20,
                        "start_timeout_s": 20, "env": env, "log_dir": str(mini.root / "logs"), **candidate}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def check(path: Path):
    return CliRunner().invoke(cli, ["check", str(path), "--no-progress"], catch_exceptions=False)


def worker_pid(stderr: str) -> int:
    return int(re.search(r"vLLM engine \(pid (\d+)\)", stderr).group(1))


def shared_folders() -> set[str]:
    import tempfile

    root = Path(shared_root() or tempfile.gettempdir())
    return {p.name for p in root.glob("promote-logits-*")}


def test_a_worker_that_speaks_the_protocol_runs_the_check_and_is_stopped(mini):
    before = shared_folders()
    result = check(contract(mini, "ok"))
    assert result.exit_code == 1, result.output  # uniform logits vs the mini model: a real, failing comparison
    # the contract's env asked for V1 multiprocessing; the kernel forces it off (the fake refuses otherwise)
    assert not launch.alive(worker_pid(result.stderr))
    assert list((mini.root / "logs").iterdir()) == []  # log and pid file removed after a check that went well
    assert shared_folders() == before  # the batches' shared files and their folder are gone


@pytest.mark.parametrize(("mode", "says"), [
    ("exit", "exited with code 7"),
    ("garbage", "not JSON: b'INFO this is not the protocol'"),
    ("huge", "more than 65536 bytes"),
    ("refuse", "failed the engine start: ValueError: cannot load"),
    ("facts", "reported vocabulary sixteen"),
    ("lie", "but the engine reported 1.5"),
    ("rows", "does not cover its prompts"),
    ("truncate", "was changed during the batch"),
    ("die", "exited with code 9"),
])
def test_a_hostile_worker_is_exit_3_naming_the_cause_with_its_log(mini, mode, says):
    result = check(contract(mini, mode))
    assert result.exit_code == 3, result.output
    assert says in result.stderr, result.stderr
    assert "Traceback" not in result.output
    if mode not in ("truncate",):  # the worker's own words reach the message (its log's tail)
        assert "fake worker starting" in result.stderr
    assert not launch.alive(worker_pid(result.stderr))
    assert list((mini.root / "logs").glob("*.log"))  # kept: the worker failed


def test_a_worker_that_never_answers_is_stopped_at_the_deadline(mini):
    result = check(contract(mini, "hang", start_timeout_s=2))
    assert result.exit_code == 3, result.output
    assert "did not answer the engine start within 2 s" in result.stderr
    assert not launch.alive(worker_pid(result.stderr))


def test_a_missing_interpreter_is_a_usage_error(mini):
    result = check(contract(mini, "ok", python=str(mini.root / "no-such-python")))
    assert result.exit_code == 2, result.output
    assert "not found or not executable" in result.stderr and "tools/vllm_env.sh" in result.stderr


def test_contract_errors_are_located(mini):
    path = contract(mini, "ok", engine_args={"model": "elsewhere", "enforce_eager": True})
    (mini.root / "model" / "config.json").unlink()
    result = CliRunner().invoke(cli, ["validate", str(path)], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "`engine_args.model` is set by promote" in result.output
    assert "has no config.json" in result.output


def test_sample_longer_than_the_engine_takes_is_a_usage_error(mini):
    lines = [f'{{"id": "long", "input_ids": {list(range(16)) * 5}}}']  # 80 tokens, the fake takes 63
    (mini.root / "eval.jsonl").write_text("\n".join(lines) + "\n")
    result = check(contract(mini, "ok"))
    assert result.exit_code == 2, result.output
    assert "sample `long` has 80 tokens" in result.stderr and "`max_model_len`" in result.stderr


def test_promote_sets_what_the_worker_refuses_from_engine_args():
    assert tuple(vllm_worker.RESERVED) == VLLM_RESERVED_ARGS


def test_a_token_beyond_the_engine_vocabulary_is_refused_before_it_is_sent(mini):
    (mini.root / "eval.jsonl").write_text('{"id": "wide", "input_ids": [1, 2, 3, 4, 5, 20, 6, 7, 8]}\n')
    path = contract(mini, "ok")
    doc = yaml.safe_load(path.read_text())
    doc["reference"] = dict(doc["candidate"])  # both sides the fake engine (vocabulary 16)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = check(path)
    # An id beyond the engine's vocabulary is an identity finding (issue 23): the run is `invalid`, exit 3.
    assert result.exit_code == 3, result.output
    assert "invalid: identity" in result.stderr
    assert "sample `wide` has token id 20 at position 5" in result.stderr
    assert "vocabulary of 16 ids" in result.stderr


def test_a_bf16_engine_on_an_amx_host_refuses_3_and_4_token_samples(mini, monkeypatch):
    monkeypatch.setattr(launch, "host_has_amx", lambda cpuinfo=None: True)
    (mini.root / "eval.jsonl").write_text('{"id": "ok", "input_ids": [1, 2, 3, 4, 5, 6, 7, 8]}\n'
                                          '{"id": "short", "input_ids": [1, 2, 3, 4]}\n')
    result = check(contract(mini, "ok", dtype="bfloat16"))
    assert result.exit_code == 2, result.output
    assert "`short` (4 tokens)" in result.stderr and "`dtype: float32`" in result.stderr
    assert not launch.alive(worker_pid(result.stderr))
