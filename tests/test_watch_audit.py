"""The audit log of `promote watch` (issue 24 item 4): hash-chained, append-only, verified; an edited,
removed, reordered or cut-off record is found and named; SIGTERM in the middle of the loop (while a
slow sink acts) leaves a log that verifies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from promote.watch.audit import GENESIS, AuditError, AuditLog, canonical, verify

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, n: int) -> list[dict]:
    log = AuditLog(path)
    return [log.append({"window": {"index": i}, "outcome": "clean", "note": f"record {i}"}) for i in range(n)]


def test_append_then_verify_round_trips_and_chains(tmp_path):
    path = tmp_path / "a.jsonl"
    written = write(path, 3)
    got = verify(path)
    assert got.records == written and got.last_hash == written[-1]["hash"]
    assert written[0]["prev"] == GENESIS and written[1]["prev"] == written[0]["hash"]
    assert [r["seq"] for r in written] == [0, 1, 2]
    more = AuditLog(path).append({"outcome": "bad"})  # a new process carries the chain on
    assert more["prev"] == written[-1]["hash"] and more["seq"] == 3
    assert verify(tmp_path / "absent.jsonl").records == []


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


@pytest.mark.parametrize("tamper, expected", [
    (lambda ls: [ls[0], ls[1].replace(b"record 1", b"record X"), ls[2], ls[3]], "line 2: its hash does not match"),
    (lambda ls: [ls[0], ls[2], ls[3]], "line 2: `prev` does not match"),
    (lambda ls: [ls[0], ls[2], ls[1], ls[3]], "line 2: `prev` does not match"),
    (lambda ls: [*ls[:3], ls[3][:-9]], "line 4: incomplete"),
    (lambda ls: [ls[0], ls[1].replace(b'"outcome":"clean"', b'"outcome": "clean"'), *ls[2:]],
     "line 2: not in canonical"),
    (lambda ls: [ls[0], b"{}\n", *ls[1:]], "line 2: not an audit record"),
    (lambda ls: [ls[0], b"\x00garbage\n", *ls[1:]], "line 2: not a JSON record"),
])
def test_an_edited_removed_reordered_or_cut_record_is_named(tmp_path, tamper, expected):
    path = tmp_path / "a.jsonl"
    write(path, 4)
    path.write_bytes(b"".join(tamper(lines(path))))
    with pytest.raises(AuditError, match=expected):
        verify(path)


def test_a_forged_record_with_a_recomputed_hash_still_breaks_the_chain(tmp_path):
    from promote.watch.audit import record_hash

    path = tmp_path / "a.jsonl"
    write(path, 3)
    ls = lines(path)
    forged = json.loads(ls[1])
    forged["outcome"] = "bad"
    forged["hash"] = record_hash(forged)
    path.write_bytes(ls[0] + canonical(forged) + b"\n" + ls[2])
    with pytest.raises(AuditError, match="line 3: `prev` does not match"):
        verify(path)


def test_a_second_writer_is_refused(tmp_path):
    first = AuditLog(tmp_path / "a.jsonl", exclusive=True)
    with pytest.raises(AuditError, match="another `promote watch` is appending"):
        AuditLog(tmp_path / "a.jsonl", exclusive=True)
    first.close()
    AuditLog(tmp_path / "a.jsonl", exclusive=True).close()
    assert verify(tmp_path / "a.jsonl").records == []  # readers need no lock


def test_a_fifo_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "log.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(AuditError, match="not a regular file"):
        verify(fifo)


def test_non_finite_numbers_are_never_written(tmp_path):
    with pytest.raises(ValueError):
        AuditLog(tmp_path / "a.jsonl").append({"x": float("nan")})
    assert not (tmp_path / "a.jsonl").exists()


def test_sigterm_mid_loop_leaves_a_log_that_verifies(tmp_path):
    """A real `promote watch` process, killed while its (slow) sink acts on the third decision: exit 143,
    every record whole, the chain intact, and the record being decided simply absent."""
    from test_watch_loop import obs_contract

    contract = obs_contract(tmp_path, {"window": "50ms"})
    target = tmp_path / "traffic.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")]),
           "PROMOTE_PLUGINS": "watch_sink_plugin"}
    proc = subprocess.Popen([sys.executable, "-m", "promote.cli", "watch", str(contract), "--sink",
                             f"file:path={target},delay=0.5"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    calls = target.with_suffix(".calls")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if calls.exists() and len(calls.read_text().splitlines()) >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert len(calls.read_text().splitlines()) >= 3, "the watch did not reach its third window in time"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err[-2000:]
    records = verify(tmp_path / "c.yaml.watch.jsonl").records
    assert len(records) == len(calls.read_text().splitlines()) - 1  # the interrupted decision left no record
    assert len(records) >= 2 and "interrupted by SIGTERM" in err
