"""User code that ends the process or raises KeyboardInterrupt is an evaluation error (exit 3, report
written), never a pass; a real Ctrl-C or SIGTERM stops `promote check` with 130 or 143."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import jsonschema
import pytest
from click.testing import CliRunner
from conftest import MINI_MODEL

from promote.cli import cli
from promote.errors import EXIT_SIGINT, EXIT_SIGTERM
from promote.resources import load_schema

EXITS = MINI_MODEL + '''
import argparse
import os
import sys
import time
from pathlib import Path


def build_exit_0():
    sys.exit(0)


def build_argparse():
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=8)
    parser.parse_args()  # sees promote's own command line
    return Mini()


def build_forward_interrupt():
    class Interrupting(Mini):
        def forward(self, ids):
            raise KeyboardInterrupt
    return Interrupting()


def build_forward_exit():
    class Exiting(Mini):
        def forward(self, ids):
            raise SystemExit("done early")
    return Exiting()


class Custom(BaseException):
    pass


def build_custom_base():
    raise Custom("not an Exception")


def build_sleepy():
    Path(os.environ["PROMOTE_TEST_MARKER"]).write_text("building")
    time.sleep(600)
    return Mini()
'''


def _contract(mini, file: str, factory: str):
    """The mini contract with the candidate built by ``file:factory``."""
    contract = mini.contract(candidate=factory)
    contract.write_text(contract.read_text().replace(f"model.py:{factory}", f"{file}:{factory}"))
    assert f"{file}:{factory}" in contract.read_text()
    return contract


def _check(mini, factory: str, tmp_path):
    """`promote check` in-process (no signal handlers: a KeyboardInterrupt can only be the model's own)."""
    mini.write("exits.py", EXITS)
    contract = _contract(mini, "exits.py", factory)
    out = tmp_path / "out" / "report.json"
    result = CliRunner().invoke(cli, ["check", str(contract), "--output", f"json={out}"], catch_exceptions=False)
    return result, out


@pytest.mark.parametrize(("factory", "says"), [
    ("build_exit_0", "called sys.exit(0)"),
    ("build_argparse", "called sys.exit(2)"),
    ("build_forward_interrupt", "KeyboardInterrupt"),
    ("build_forward_exit", "called sys.exit('done early')"),
    ("build_custom_base", "raised Custom: not an Exception"),
])
def test_user_code_that_exits_is_an_evaluation_error_with_the_report_written(mini, tmp_path, factory, says):
    result, out = _check(mini, factory, tmp_path)
    assert result.exit_code == 3, result.output
    assert says in result.stderr and "candidate" in result.stderr
    report = json.loads(out.read_text())
    jsonschema.validate(report, load_schema("report"))
    assert report["verdict"] == "error"
    clauses = report["stages"][0]["clauses"]
    assert clauses and {c["status"] for c in clauses} == {"error"}
    assert says in clauses[0]["message"]


def test_a_model_file_that_exits_on_import_is_an_evaluation_error(mini, tmp_path):
    mini.write("quits.py", "import sys\nsys.exit(0)\n")
    contract = _contract(mini, "quits.py", "build_quits")
    out = tmp_path / "report.json"
    result = CliRunner().invoke(cli, ["check", str(contract), "--output", f"json={out}"], catch_exceptions=False)
    assert result.exit_code == 3, result.output
    assert "importing the model file called sys.exit(0)" in result.stderr
    assert json.loads(out.read_text())["verdict"] == "error"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, EXIT_SIGINT), (signal.SIGTERM, EXIT_SIGTERM)])
def test_a_signal_during_a_run_stops_it_with_the_shell_code(mini, tmp_path, signum, code):
    """A real subprocess: the factory writes a marker and blocks; the signal arrives while user code runs,
    and must not be taken for the model's own KeyboardInterrupt (exit 3) nor a failed gate (exit 1)."""
    mini.write("exits.py", EXITS)
    contract = _contract(mini, "exits.py", "build_sleepy")
    marker = tmp_path / "marker"
    out = tmp_path / "report.json"
    env = {**os.environ, "PROMOTE_TEST_MARKER": str(marker)}
    proc = subprocess.Popen([sys.executable, "-m", "promote.cli", "check", str(contract), "--output",
                             f"json={out}", "--no-progress"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300  # a guard against hanging, not a timing assertion
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the factory never ran"
            time.sleep(0.05)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, stderr
    assert f"interrupted by {signal.Signals(signum).name}" in stderr
    assert "Traceback" not in stderr
    assert not out.exists()  # no verdict, so no report that could be read as one
