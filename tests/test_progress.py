"""Progress on stderr (progress.py): an in-place line on a terminal, plain lines in pipes and CI logs.

Time is a fake clock advanced by hand, so the unit tests do not depend on the machine's speed; the
heartbeat's thread is waited for with a generous deadline (a guard, not a timing assertion). One
test runs the shipped example with both streams piped, as a newcomer's first `| tee` does.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time

import pytest
from conftest import REPO

from promote.progress import default_mode, progress_printer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_line_appears_only_after_the_delay(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    progress_printer(True, after_s=3600)(1, 2)
    assert err.getvalue() == ""
    show = progress_printer(True, after_s=0)
    show.phase("numerics")
    show(2, 2)
    assert "numerics 2/2 samples" in err.getvalue() and err.getvalue().endswith("\n")
    assert progress_printer(False) is None and progress_printer(None) is None


def test_lines_mode_prints_a_plain_line_every_five_seconds():
    clock, out = Clock(), io.StringIO()
    show = progress_printer("lines", clock=clock, stream=out)
    show.phase("numerics")
    for done in range(1, 31):  # 30 batches, one every 0.5 s: 15 s in all
        clock.now += 0.5
        show(done, 30)
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == 3, lines  # at 5 s, 10 s and the final 30/30 at 15 s
    assert lines[0] == "promote: numerics 10/30 samples, 5s elapsed, ~10s left"
    assert lines[1].startswith("promote: numerics 20/30 samples, 10s elapsed")
    assert lines[-1].startswith("promote: numerics 30/30 samples, 15s elapsed")


def test_lines_mode_is_silent_for_a_short_run():
    clock, out = Clock(), io.StringIO()
    show = progress_printer("lines", clock=clock, stream=out)
    clock.now += 1.0
    show(5, 5)
    assert out.getvalue() == ""


def test_tty_mode_rewrites_one_line_in_place():
    clock, out = Clock(), io.StringIO()
    show = progress_printer("tty", clock=clock, stream=out)
    for done in (1, 2, 3):
        clock.now += 3
        show(done, 3)
    text = out.getvalue()
    assert text.count("\r") == 3 and text.count("\n") == 1 and text.endswith("\n")


@pytest.mark.parametrize(("flag", "tty", "mode"), [
    (None, True, "tty"),
    (None, False, "lines"),  # a pipe or a file: plain lines, CI or not
    (True, False, "lines"),
    (False, True, None),
    (False, False, None),
    (True, True, "tty"),
])
def test_default_mode(flag, tty, mode):
    assert default_mode(flag, stderr_is_tty=tty) == mode


def test_heartbeat_names_the_phase_when_no_batch_reports():
    """Building kernels or a stage of HTTP requests calls no batch callback: the heartbeat speaks for them."""
    clock, out = Clock(), io.StringIO()
    show = progress_printer("lines", clock=clock, stream=out, every_s=0.2)
    show.begin("checking stages numerics")
    try:
        assert out.getvalue().startswith("promote: checking stages numerics (a progress line every")
        show.phase("numerics")
        clock.now += 3.0
        deadline = time.monotonic() + 60  # a guard against a hang, not a timing assertion
        while "numerics, 3s elapsed" not in out.getvalue():
            assert time.monotonic() < deadline, out.getvalue()
            time.sleep(0.05)
    finally:
        show.end()
    show.end()  # idempotent
    lines = out.getvalue().splitlines()
    assert lines[-1] == "promote: numerics, 3s elapsed" and "\r" not in out.getvalue()


def test_tty_mode_has_no_start_line_or_heartbeat():
    out = io.StringIO()
    show = progress_printer("tty", clock=Clock(), stream=out)
    show.begin("checking stages numerics")
    show.end()
    assert out.getvalue() == ""


def test_example_piped_shows_progress_within_ten_seconds(tmp_path):
    """`promote check examples/tiny_lm/contract.yaml 2>&1 | tee` once printed nothing for 105 s: with stdout
    and stderr both pipes, a progress line must arrive within the first 10 s, then more as the run goes."""
    env = {**os.environ, "CI": ""}  # not a CI log: an ordinary pipe
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "promote.cli", "check", "examples/tiny_lm/contract.yaml"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    arrived: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: arrived.extend((time.monotonic() - started, line)
                                                            for line in proc.stderr), daemon=True)
    reader.start()
    try:
        deadline = started + 300  # a guard against a hang; the assertion is on the first line's time
        while len(arrived) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.terminate()
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=30)
    assert arrived, "nothing on stderr"
    first_s, first = arrived[0]
    assert first.startswith("promote: checking stages numerics, slices"), arrived
    assert first_s < 10, arrived
    assert len(arrived) >= 2 and arrived[1][1].startswith("promote: "), arrived  # a heartbeat or batch line
    assert all("\r" not in line for _, line in arrived)


def test_check_under_ci_prints_plain_progress_lines(mini, monkeypatch):
    """End to end through the CLI: no terminal → newline-terminated lines, no `\\r`."""
    from click.testing import CliRunner

    from promote.cli import cli

    ticks = iter(range(0, 10_000, 7))  # every clock read advances 7 s: the run "takes" minutes
    monkeypatch.setattr("promote.progress.monotonic", lambda: float(next(ticks)))
    result = CliRunner().invoke(cli, ["check", str(mini.contract())], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    progress = [line for line in result.stderr.splitlines() if line.startswith("promote: numerics")]
    assert progress and progress[-1].startswith("promote: numerics 24/24 samples")
    assert "\r" not in result.stderr
