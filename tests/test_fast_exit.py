"""`promote` ends a finished command without the interpreter's teardown (signals.finish; ~1 s once torch and
transformers are loaded, docs/performance.md) and still does what a normal exit does that matters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from promote.cli import cli

REPO = Path(__file__).resolve().parents[1]

# A process that loads promote's CLI, leaves work for the exit (an atexit handler, a buffered file never closed,
# an object whose finaliser only a full teardown runs, optionally a thread still running), then runs main().
PROGRAM = """
import atexit, sys, threading, time
from pathlib import Path
out = Path(sys.argv[1])
atexit.register(lambda: (out / "atexit").write_text("ran"))
log = open(out / "log.txt", "w")  # never closed: its buffered line must reach the file
log.write("a line the factory logged\\n")
class Finalised:
    def __del__(self):
        (out / "teardown").write_text("ran")
keep = Finalised()
if sys.argv[2] == "thread":
    threading.Thread(target=lambda: (time.sleep(0.5), (out / "thread").write_text("done"))).start()
sys.argv = ["promote", *sys.argv[3:]]
import promote.cli
promote.cli.main()
"""


def run(tmp_path: Path, *args: str, thread: bool = False, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess:
    inherited = {k: v for k, v in os.environ.items() if k != "PROMOTE_FULL_EXIT"}
    full = {**inherited, "PYTHONPATH": str(REPO / "src"), **(env or {})}
    return subprocess.run([sys.executable, "-c", PROGRAM, str(tmp_path), "thread" if thread else "-", *args],
                          capture_output=True, text=True, env=full, timeout=120)


def test_a_finished_command_skips_the_teardown_but_not_what_an_exit_must_do(tmp_path):
    proc = run(tmp_path, "schema")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == CliRunner().invoke(cli, ["schema"]).output  # all 300 kB of it, through the pipe
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "log.txt").read_text() == "a line the factory logged\n"
    assert not (tmp_path / "teardown").exists(), "the interpreter was torn down: the fast exit did not run"


def test_exit_codes_and_messages_are_those_of_a_normal_exit(tmp_path):
    proc = run(tmp_path, "validate", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2 and "file not found" in proc.stderr
    assert not (tmp_path / "teardown").exists()
    proc = run(tmp_path, "--version")
    assert proc.returncode == 0 and proc.stdout.startswith("promote")


def test_a_running_thread_or_the_opt_out_keeps_the_normal_exit(tmp_path):
    threaded = tmp_path / "threaded"
    threaded.mkdir()
    proc = run(threaded, "--version", thread=True)
    assert proc.returncode == 0, proc.stderr
    assert (threaded / "thread").read_text() == "done"  # joined, as a normal exit does
    assert (threaded / "teardown").read_text() == "ran"
    opted = tmp_path / "opted"
    opted.mkdir()
    proc = run(opted, "--version", env={"PROMOTE_FULL_EXIT": "1"})
    assert proc.returncode == 0 and (opted / "teardown").read_text() == "ran"
    assert (opted / "atexit").read_text() == "ran" and (opted / "log.txt").read_text().startswith("a line")
