"""`promote watch` end to end on real parts that run here: the observability stage on a metrics snapshot
the test rewrites between windows (an honest then a faulted canary), shadow numerics of a tailed request
log on real torch kernels, the sinks from the registry (a small in-test sink), the audit log, resume,
dry-run and the `invalid` stop (issue 24 items 1, 2 and 4)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from watch_sinks import ExplodingSink, FileSink, FlakySink

from promote.cli import cli
from promote.contract.model import load_contract
from promote.sinks.api import SINKS
from promote.watch.audit import AuditLog, verify
from promote.watch.loop import Watch
from promote.watch.sinks import build_sinks
from promote.watch.spec import SinkSpec, from_contract
from promote.watch.window import WindowResult

SNAPSHOT = "# TYPE canary_log_ratio_p99 gauge\ncanary_log_ratio_p99 {value} {ms}\n"


def snapshot(root: Path, value: float) -> None:
    (root / "m.prom").write_text(SNAPSHOT.format(value=value, ms=int(time.time() * 1000)))


def obs_contract(root: Path, watch: dict | None = None) -> Path:
    doc = {"version": 1, "name": "obs-watch",
           "observability": {"source": {"kind": "file", "path": "m.prom"}, "clauses": [
               {"id": "log-ratio", "metric": "canary_log_ratio_p99", "max": 0.02},
               {"id": "fresh", "metric": "canary_log_ratio_p99", "max_age": "5m"}]},
           "watch": {"window": "100ms", "trip_after": 1, "restore_after": 2, "min_wait": "0s",
                     **(watch or {})}}
    path = root / "c.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    snapshot(root, 0.005)
    return path


def make_watch(path: Path, sinks: list, *, windows: int, sleep=lambda s: None, evaluate=None, digest="img@sha256:a",
               dry_run=False) -> Watch:
    contract, _ = load_contract(path)
    from dataclasses import replace

    spec = replace(from_contract(contract), windows=windows)
    return Watch(contract, spec, sinks, AuditLog(spec.log), digest, dry_run=dry_run, sleep=sleep, evaluate=evaluate,
                 emit=lambda line: None)


def calls(root: Path) -> list[dict]:
    path = root / "traffic.calls"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_an_honest_canary_holds_then_a_faulted_one_is_routed_back_and_restored(tmp_path):
    path = obs_contract(tmp_path)
    values = iter([0.005, 0.4, 0.4, 0.005, 0.005])  # written after windows 1..5
    sink = FileSink({"path": str(tmp_path / "traffic.json")}, "test")
    watch = make_watch(path, [sink], windows=6, sleep=lambda s: snapshot(tmp_path, next(values)))
    assert watch.run() == 0
    records = verify(tmp_path / "c.yaml.watch.jsonl").records
    assert [r["outcome"] for r in records] == ["clean", "clean", "bad", "bad", "clean", "clean"]
    assert [r["decision"]["action"] for r in records] == ["hold", "hold", "route_back", "hold", "hold", "restore"]
    assert [c["weight"] for c in calls(tmp_path)] == [10, 10, 0, 0, 0, 10]
    assert json.loads((tmp_path / "traffic.json").read_text()) == {"weight": 10}
    routed = records[2]
    assert routed["contract_sha256"] == watch.contract.sha256 and routed["candidate_digest"] == "img@sha256:a"
    assert routed["sinks"] == [{"call": "apply", "action": "route_back", "candidate_weight": 0, "sink": "file",
                                "ok": True, "dry_run": False, "changed": True, "read_back": {"weight": 0},
                                "message": ""}]
    assert "observability/log-ratio" in routed["decision"]["reason"]
    assert routed["evidence"]["stages"]["observability"]["clauses"]["log-ratio"] == "fail"
    assert routed["evidence"]["notable"][0]["observed"] == pytest.approx(0.4)
    assert [r["window"]["index"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[0]["evidence"]["looks"] == 6  # the horizon split: α / 6 each


def test_missing_data_is_a_bad_window(tmp_path):
    path = obs_contract(tmp_path)
    (tmp_path / "m.prom").unlink()
    watch = make_watch(path, [], windows=1)
    assert watch.run() == 1  # routed back
    record = verify(watch.spec.log).latest
    assert record["outcome"] == "bad" and record["decision"]["action"] == "route_back"


def test_an_invalid_verdict_stops_the_loop_and_the_log_stays_stopped_for_that_digest(tmp_path):
    path = obs_contract(tmp_path)
    planted = iter([WindowResult("clean", "pass", "planted"), WindowResult("invalid", "invalid", "planted identity")])
    sink = FileSink({"path": str(tmp_path / "traffic.json")}, "test")
    watch = make_watch(path, [sink], windows=5, evaluate=lambda i, now: next(planted))
    assert watch.run() == 3
    records = verify(watch.spec.log).records
    assert len(records) == 2 and records[-1]["decision"]["action"] == "stop"
    assert records[-1]["decision"]["verdict"] == "invalid" and records[-1]["decision"]["candidate_weight"] == 0
    assert calls(tmp_path)[-1] == {"window": 2, "action": "route_back", "dry_run": False, "weight": 0}  # not `stop`:
    assert json.loads((tmp_path / "traffic.json").read_text()) == {"weight": 0}  # routing sinks ignore a stop
    again = make_watch(path, [sink], windows=1, evaluate=lambda i, now: WindowResult("clean", "pass", "x"))
    assert again.run() == 3 and len(verify(watch.spec.log).records) == 2  # same digest: refuses, writes nothing
    new = make_watch(path, [sink], windows=1, evaluate=lambda i, now: WindowResult("clean", "pass", "x"),
                     digest="img@sha256:b")
    assert new.run() == 1  # a new candidate is watched, but starts routed back: restore is slow
    assert verify(watch.spec.log).latest["state"]["phase"] == "routed_back"


def test_a_restarted_watch_resumes_its_streaks_from_the_log(tmp_path):
    path = obs_contract(tmp_path, {"trip_after": 2})
    snapshot(tmp_path, 0.4)
    assert make_watch(path, [], windows=1).run() == 0  # 1 bad of 2: held
    second = make_watch(path, [], windows=1)
    assert second.run() == 1  # the second bad window in a row, across the restart
    assert [r["decision"]["action"] for r in verify(second.spec.log).records] == ["hold", "route_back"]


def test_an_unconfirmed_route_back_is_retried_every_window_until_the_sink_confirms_it(tmp_path):
    path = obs_contract(tmp_path)
    snapshot(tmp_path, 0.4)
    flaky = FlakySink({"path": str(tmp_path / "traffic.json"), "failures": 2}, "test")
    watch = make_watch(path, [flaky], windows=2)
    assert watch.run() == 1
    first = make_watch(path, [FlakySink({"path": str(tmp_path / "traffic.json"), "failures": 0}, "t")], windows=2)
    assert first.run() == 1  # a restarted watch retries what the log says is unconfirmed
    records = verify(watch.spec.log).records
    assert [r["decision"]["action"] for r in records] == ["route_back", "hold", "hold", "hold"]
    assert [(r["sinks"][0]["action"], r["sinks"][0]["ok"]) for r in records] == [
        ("route_back", False), ("route_back", False), ("route_back", True), ("route_back", True)]
    # a hold while routed back re-asserts weight 0 every window (idempotent: the sink reads 0 and sends nothing)
    assert [c["action"] for c in calls(tmp_path)] == ["route_back", "route_back", "route_back", "route_back"]
    assert json.loads((tmp_path / "traffic.json").read_text()) == {"weight": 0}


def test_a_sink_that_raises_is_recorded_and_the_decision_is_kept(tmp_path):
    path = obs_contract(tmp_path)
    watch = make_watch(path, [ExplodingSink({}, "t")], windows=1)
    assert watch.run() == 0
    sink = verify(watch.spec.log).latest["sinks"][0]
    assert sink["ok"] is False and "ConnectionError: the traffic system is down" in sink["message"]


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_cli_dry_run_logs_each_sink_call_without_acting(tmp_path):
    path = obs_contract(tmp_path)
    target = tmp_path / "traffic.json"
    target.write_text(json.dumps({"weight": 55}))
    with SINKS.registered("file", FileSink):
        result = invoke("watch", str(path), "--windows", "2", "--window", "50ms", "--dry-run",
                        "--sink", f"file:path={target}", "--candidate-digest", "img@sha256:c")
    assert result.exit_code == 0, result.output
    assert "dry run: sink file: apply(action=hold, candidate_weight=10)" in result.stderr
    assert json.loads(target.read_text()) == {"weight": 55}  # untouched
    records = verify(tmp_path / "c.yaml.watch.jsonl").records
    assert all(r["dry_run"] and r["sinks"][0]["dry_run"] and r["sinks"][0]["read_back"] == {"weight": 55}
               for r in records)
    assert [c["dry_run"] for c in calls(tmp_path)] == [True, True]
    assert "window 2: clean (pass) → hold" in result.stdout


def test_cli_usage_errors_name_the_flag_or_key(tmp_path):
    path = obs_contract(tmp_path, {"sinks": [{"kind": "nosuch", "x": 1}]})
    result = invoke("watch", str(path), "--windows", "1")
    assert result.exit_code == 2 and "watch.sinks[0]: unknown sink kind `nosuch`" in result.stderr
    result = invoke("watch", str(obs_contract(tmp_path)), "--sink", "file:path", "--windows", "1")
    assert result.exit_code == 2 and "--sink file: option 'path' is not key=value" in result.stderr
    with SINKS.registered("file", FileSink):
        result = invoke("watch", str(obs_contract(tmp_path)), "--sink", "file:colour=red", "--windows", "1")
    assert result.exit_code == 2 and "--sink file: the file sink needs `path`" in result.stderr
    result = invoke("watch", str(obs_contract(tmp_path)), "--window", "soon", "--windows", "1")
    assert result.exit_code == 2 and "--window: `soon` is not a duration" in result.stderr
    bad = obs_contract(tmp_path, {"stages": ["numerics", "nope"], "window": "0s"})
    result = invoke("watch", str(bad), "--windows", "1")
    assert result.exit_code == 2 and "watch.stages[1]" in result.stderr and "unknown stage `nope`" in result.stderr
    assert "watch.stages[0]" in result.stderr and "stage `numerics` has no `numerical:` section" in result.stderr
    assert "Traceback" not in result.output


def test_cli_refuses_an_audit_log_that_does_not_verify(tmp_path):
    path = obs_contract(tmp_path)
    assert invoke("watch", str(path), "--windows", "2", "--window", "10ms").exit_code == 0
    log = tmp_path / "c.yaml.watch.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text(lines[0].replace('"outcome":"clean"', '"outcome":"bad"') + lines[1])
    result = invoke("watch", str(path), "--windows", "1")
    assert result.exit_code == 2 and "line 1: its hash does not match its content" in result.stderr
    assert log.read_text().count("\n") == 2  # never rewritten


def test_shadow_numerics_from_a_tailed_request_log(mini, tmp_path):
    requests = mini.root / "requests.jsonl"
    good = [json.dumps({"input_ids": [(i * 5 + t) % 16 for t in range(6)], "time": time.time(), "id": f"r{i}"})
            for i in range(12)]
    hostile = ['{"input_ids": [1, 2', "not json", json.dumps({"input_ids": [2**70]}),
               json.dumps({"input_ids": list(range(16)) * 1000}), json.dumps([1, 2]),
               json.dumps({"input_ids": [1, 2], "tags": {"a": 1}})]
    requests.write_text("\n".join([*good[:6], *hostile, *good[6:]]) + '\n{"input_ids": [3, 4')
    watch = {"sample": 8, "requests": {"path": "requests.jsonl", "max_prompt_tokens": 64}, "trip_after": 1}
    honest = mini.contract("honest.yaml", extra={"watch": watch})
    result = invoke("watch", str(honest), "--windows", "1", "--window", "10ms")
    assert result.exit_code == 0, result.output
    record = verify(mini.root / "honest.yaml.watch.jsonl").latest
    prompts = record["evidence"]["prompts"]
    assert prompts["usable"] == 8 and prompts["source"].endswith("requests.jsonl")
    assert prompts["skipped"] == {"bad_input_ids": 1, "bad_tags": 1, "incomplete": 1, "not_an_object": 1,
                                  "not_json": 2, "too_long": 1}
    assert record["evidence"]["stages"]["numerics"]["clauses"] == {"kl-mean": "pass", "agree": "pass",
                                                                   "finite": "pass"}
    faulted = mini.contract("hot.yaml", candidate="build_hot", extra={"watch": watch})
    result = invoke("watch", str(faulted), "--windows", "1", "--window", "10ms")
    assert result.exit_code == 1, result.output
    record = verify(mini.root / "hot.yaml.watch.jsonl").latest
    assert record["outcome"] == "bad" and record["decision"]["action"] == "route_back"
    requests.write_text("garbage only\n")
    result = invoke("watch", str(honest), "--windows", "1", "--window", "10ms")
    assert result.exit_code == 1  # no usable prompt: missing data fails
    assert "no usable prompts" in verify(mini.root / "honest.yaml.watch.jsonl").latest["decision"]["reason"]


def test_sinks_from_the_contract_and_flags_are_built_in_order(tmp_path):
    with SINKS.registered("file", FileSink):
        built = build_sinks([SinkSpec("file", {"path": str(tmp_path / "a")}, "c.yaml: watch.sinks[0]"),
                             SinkSpec("file", {"path": str(tmp_path / "b")}, "--sink file")])
    assert [s.path.name for s in built] == ["a", "b"]


def test_a_candidate_that_cannot_be_opened_is_missing_data_every_window(mini):
    path = mini.contract("broken.yaml", candidate="build_broken", extra={"watch": {"window": "10ms", "sample": 4}})
    result = invoke("watch", str(path), "--windows", "2")
    assert result.exit_code == 1, result.output
    records = verify(mini.root / "broken.yaml.watch.jsonl").records
    assert [r["decision"]["action"] for r in records] == ["route_back", "hold"]  # tried again, still bad
    assert all("the kernels could not be opened" in r["decision"]["reason"] and "factory exploded" in
               r["decision"]["reason"] for r in records)


def test_the_runtime_stage_is_judged_at_each_windows_level(mini):
    watch = {"window": "10ms", "sample": 6, "stages": ["runtime"]}
    path = mini.contract("rt.yaml", extra={"watch": watch, "runtime": {
        "alpha": 0.05, "warmup": 1,
        "clauses": [{"id": "lat", "metric": "latency_ms", "stat": "p50", "max_ratio": 1000}]}})
    result = invoke("watch", str(path), "--windows", "2")
    assert result.exit_code == 0, result.output
    records = verify(mini.root / "rt.yaml.watch.jsonl").records
    assert [list(r["evidence"]["stages"]) for r in records] == [["runtime"], ["runtime"]]  # numerics not wanted
    assert [r["evidence"]["looks"] for r in records] == [2, 2]  # --windows 2: α/2 each
    notes = records[0]["evidence"]["stages"]["runtime"]["notes"]
    assert "each look judged at alpha 0.025 (2 declared looks)" in notes[0]
    assert records[0]["evidence"]["prompts"]["usable"] == 6


def test_an_http_candidate_is_launched_once_for_the_whole_watch_and_stopped(mini):
    """An `openai` candidate (tests/launch_server.py, vLLM's answer shape) kept open across windows: one
    server start, every window's prompts sent to it, the server stopped when the watch ends."""
    from test_launch import contract, started_pid

    from promote.kernels import launch

    path = contract(mini, "ok")
    doc = yaml.safe_load(path.read_text())
    doc["watch"] = {"window": "10ms", "sample": 4, "trip_after": 2}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = invoke("watch", str(path), "--windows", "3")
    assert result.stderr.count("server (pid") == 1, result.stderr
    assert not launch.alive(started_pid(result.stderr))
    records = verify(mini.root / "contract.yaml.watch.jsonl").records
    # uniform answers against the mini model: a real numerics failure, routed back after 2 bad windows
    assert [r["decision"]["action"] for r in records] == ["hold", "route_back", "hold"] and result.exit_code == 1
    assert all(r["evidence"]["stages"]["numerics"]["status"] == "fail" for r in records)


def test_validate_reports_watch_section_mistakes_with_their_line(tmp_path):
    path = obs_contract(tmp_path, {"stages": ["runtime"]})
    result = invoke("validate", str(path))
    assert result.exit_code == 2
    assert re.search(r"c\.yaml:\d+:\d+: error: stage `runtime` has no `runtime:` section", result.stderr), result.stderr
    assert invoke("validate", str(obs_contract(tmp_path))).exit_code == 0


def test_request_log_reads_are_bounded_and_prefer_the_newest(tmp_path):
    from promote.watch.requestlog import RequestLogSpec, read_requests

    log = tmp_path / "r.jsonl"
    log.write_text("".join(json.dumps({"input_ids": [i % 16, 1], "id": f"r{i}"}) + "\n" for i in range(1000)))
    tail = read_requests(RequestLogSpec(path=log, display_path="r.jsonl", sample=4, tail_bytes=8192), 0.0, 1)
    assert tail.read_bytes == 8192 and tail.skipped == {"cut_by_tail": 1} and tail.pool == 32
    assert len(tail.samples) == 4 and all(int(s.tags["request_id"][1:]) >= 1000 - 32 for s in tail.samples)
    again = read_requests(RequestLogSpec(path=log, display_path="r.jsonl", sample=4, tail_bytes=8192), 0.0, 2)
    assert [s.id for s in again.samples] != [s.id for s in tail.samples]  # another window, another sample
    old = read_requests(RequestLogSpec(path=log, display_path="r.jsonl", sample=4, max_age_s=60), 0.0, 1)
    assert old.samples == [] and old.skipped == {"no_time": 1000}  # max_age needs `time`: none is usable
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    blocked = read_requests(RequestLogSpec(path=fifo, display_path="fifo.jsonl"), 0.0, 1)
    assert blocked.samples == [] and "not a regular file" in blocked.problem


def test_sink_flags_are_typed_as_the_contract_would_type_them():
    from promote.watch.spec import parse_sink_flag

    spec = parse_sink_flag("haproxy:socket=tcp://127.0.0.1:9999,backend=llm,timeout_s=2.5,rule=0,verify=false,"
                           "url=http://h:1/x?a=1")
    assert spec.kind == "haproxy" and spec.where == "--sink haproxy"
    assert spec.options == {"socket": "tcp://127.0.0.1:9999", "backend": "llm", "timeout_s": 2.5, "rule": 0,
                            "verify": False, "url": "http://h:1/x?a=1"}
    assert parse_sink_flag("webhook").options == {}
    assert parse_sink_flag("x:n=1e3,m=-2,s=1.2.3,t=True").options == {"n": 1000.0, "m": -2, "s": "1.2.3", "t": "True"}


def test_a_real_identity_mismatch_stops_the_watch_with_exit_3(mini):
    """Not a planted verdict: a candidate with 4 more vocabulary rows is `invalid` by the identity check
    (issue 23) in the first window; the loop routes it back, stops, and the log says why."""
    model = mini.root / "model.py"
    model.write_text(model.read_text() + "\n\ndef build_wide():\n    m = Mini()\n"
                     "    m.out = torch.nn.Parameter(torch.cat([m.out.data, torch.zeros(8, 4)], dim=1))\n"
                     "    return m\n")
    path = mini.contract("wide.yaml", candidate="build_wide", extra={"watch": {"window": "10ms", "sample": 6}})
    result = invoke("watch", str(path), "--windows", "3")
    assert result.exit_code == 3, result.output
    records = verify(mini.root / "wide.yaml.watch.jsonl").records
    assert len(records) == 1 and records[0]["outcome"] == "invalid"
    assert records[0]["decision"]["action"] == "stop" and records[0]["decision"]["candidate_weight"] == 0
    assert "vocabulary" in json.dumps(records[0]["evidence"])
