"""Progress on stderr (progress.py): an in-place line on a terminal, plain lines in CI logs.

Time is a fake clock advanced by hand, so nothing here sleeps or depends on the machine's speed.
"""

from __future__ import annotations

import io

import pytest

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
    progress_printer(True, after_s=0)(2, 2)
    assert "numerics 2/2 samples" in err.getvalue() and err.getvalue().endswith("\n")
    assert progress_printer(False) is None and progress_printer(None) is None


def test_ci_lines_mode_prints_a_plain_line_every_ten_seconds():
    clock, out = Clock(), io.StringIO()
    show = progress_printer("lines", clock=clock, stream=out)
    for done in range(1, 61):  # 60 batches, one every 0.5 s: 30 s in all
        clock.now += 0.5
        show(done, 60)
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == 3, lines  # at 10 s, 20 s and the final 60/60 at 30 s
    assert lines[0] == "promote: numerics 20/60 samples, 10s elapsed, ~20s left"
    assert lines[1].startswith("promote: numerics 40/60 samples, 20s elapsed")
    assert lines[-1].startswith("promote: numerics 60/60 samples, 30s elapsed")


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


@pytest.mark.parametrize(("flag", "tty", "env", "mode"), [
    (None, True, {}, "tty"),
    (None, False, {}, None),
    (None, False, {"CI": "true"}, "lines"),
    (None, False, {"CI": "false"}, None),
    (True, False, {}, "lines"),
    (False, True, {"CI": "true"}, None),
    (True, True, {}, "tty"),
])
def test_default_mode(flag, tty, env, mode):
    assert default_mode(flag, stderr_is_tty=tty, env=env) == mode


def test_check_under_ci_prints_plain_progress_lines(mini, monkeypatch):
    """End to end through the CLI: CI=true and no terminal → newline-terminated lines, no `\\r`."""
    from click.testing import CliRunner

    from promote.cli import cli

    ticks = iter(range(0, 10_000, 7))  # every clock read advances 7 s: the run "takes" minutes
    monkeypatch.setattr("promote.progress.monotonic", lambda: float(next(ticks)))
    monkeypatch.setenv("CI", "true")
    result = CliRunner().invoke(cli, ["check", str(mini.contract())], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    progress = [line for line in result.stderr.splitlines() if line.startswith("promote: numerics")]
    assert progress and progress[-1].startswith("promote: numerics 24/24 samples")
    assert "\r" not in result.stderr
