"""Nothing lost on disk: reports are replaced whole or not at all, an unwritable --output stops the run
before any kernel runs (exit 2), and a write that fails late keeps the verdict and its exit code."""

from __future__ import annotations

import json
import os
import stat

import pytest
from click.testing import CliRunner
from conftest import MINI_MODEL

from promote import atomic
from promote.atomic import writable_problem, write_text_atomic
from promote.cli import cli


def _leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith((".tmp", ".probe")))


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "report.json"
    write_text_atomic(path, "first\n")
    path.chmod(0o640)
    write_text_atomic(path, "second é\n")
    assert path.read_text(encoding="utf-8") == "second é\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # the existing file's mode is kept
    assert _leftovers(tmp_path) == []


def test_a_new_file_gets_the_mode_open_would_give(tmp_path):
    mask = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "new.md", "x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "new.md").stat().st_mode) == 0o644  # not mkstemp's 0o600


def test_a_write_that_fails_midway_keeps_the_old_file(tmp_path):
    path = tmp_path / "report.json"
    path.write_text('{"old": true}\n')
    with pytest.raises(UnicodeEncodeError):  # a real failure while writing the data
        write_text_atomic(path, "partial " + "\udcff")
    assert path.read_text() == '{"old": true}\n'
    assert _leftovers(tmp_path) == []


def test_a_failure_after_the_data_is_written_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    path.write_text("old\n")

    def no_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", no_fsync)
    with pytest.raises(OSError, match="No space"):
        write_text_atomic(path, "new\n" * 1000)
    assert path.read_text() == "old\n"
    assert _leftovers(tmp_path) == []


def test_writable_problem_names_what_is_wrong(tmp_path):
    (tmp_path / "plain").write_text("a file")
    assert "is a file, not a directory" in writable_problem(tmp_path / "plain" / "deeper" / "r.json")
    assert "is a directory" in writable_problem(tmp_path)
    assert writable_problem(tmp_path / "new" / "dir" / "r.json") is None
    assert (tmp_path / "new" / "dir").is_dir() and _leftovers(tmp_path / "new" / "dir") == []


MARKED = MINI_MODEL + '''
import os
from pathlib import Path


def build_marked():
    Path(os.environ["PROMOTE_TEST_MARKER"]).write_text("kernels ran")
    return Mini()


def build_and_block_the_output():
    """User code that runs between the pre-check and the write: the output directory becomes a file."""
    out = Path(os.environ["PROMOTE_TEST_OUTDIR"])
    for child in out.iterdir():
        child.unlink()
    out.rmdir()
    out.write_text("now a file")
    return Mini()
'''


def _contract(mini, factory: str):
    mini.write("marked.py", MARKED)
    contract = mini.contract(candidate=factory)
    contract.write_text(contract.read_text().replace(f"model.py:{factory}", f"marked.py:{factory}"))
    return contract


@pytest.mark.parametrize("bad", ["under-a-file", "a-directory"])
def test_an_unwritable_output_is_exit_2_before_any_kernel_runs(mini, tmp_path, monkeypatch, bad):
    marker = tmp_path / "marker"
    monkeypatch.setenv("PROMOTE_TEST_MARKER", str(marker))
    (tmp_path / "plain").write_text("a file")  # a parent that is a file fails for root too
    target = tmp_path / "plain" / "report.json" if bad == "under-a-file" else tmp_path
    result = CliRunner().invoke(cli, ["check", str(_contract(mini, "build_marked")), "--output",
                                      f"markdown={tmp_path / 'ok.md'}", "--output", f"json={target}"],
                                catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert f"--output json={target}" in result.stderr
    assert not marker.exists(), "a kernel ran before the output paths were checked"
    assert result.stdout == ""


def test_a_late_write_failure_keeps_the_verdict_and_the_exit_code(mini, tmp_path, monkeypatch):
    outdir = tmp_path / "out"
    monkeypatch.setenv("PROMOTE_TEST_OUTDIR", str(outdir))
    good = tmp_path / "kept" / "report.md"
    result = CliRunner().invoke(cli, ["check", str(_contract(mini, "build_and_block_the_output")), "--format",
                                      "json", "--output", f"json={outdir / 'report.json'}", "--output",
                                      f"markdown={good}"], catch_exceptions=False)
    assert outdir.is_file()  # the factory really did block the path after the pre-check
    assert result.exit_code == 0, result.output  # the gate passed; a lost file does not change that
    assert "promote: error: cannot write json report to" in result.stderr
    assert json.loads(result.stdout)["verdict"] == "pass"
    assert "mini" in good.read_text()  # the other output was still written
