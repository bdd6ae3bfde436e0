"""`promote serve` with real HTTP requests (issue 24 item 3, serve half): Argo Rollouts' `web` metric and
Flagger's webhooks answered from the latest decision of a log a real watch loop wrote; missing or stale
data fails; hostile requests (huge, chunked, not JSON, silent) are refused without harming others."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_watch_loop import make_watch, obs_contract

from promote.contract.model import load_contract
from promote.watch.serve import MAX_BODY, make_server
from promote.watch.window import WindowResult

REPO = Path(__file__).resolve().parents[1]
FLAGGER = {"name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": "6b9c2c",
           "metadata": {"owner": "ml"}}


@pytest.fixture
def served(tmp_path):
    path = obs_contract(tmp_path)
    contract, _ = load_contract(path)
    clock = {"offset": 0.0}
    server = make_server(contract, tmp_path / "c.yaml.watch.jsonl", host="127.0.0.1", port=0, stale_s=60,
                         clock=lambda: time.time() + clock["offset"])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield path, server.server_address[1], clock
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        data = json.dumps(body).encode() if isinstance(body, dict | list) else body
        conn.request(method, path, body=data, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def hooks(port, payload=FLAGGER):
    return {hook: request(port, "POST", f"/flagger/{hook}", payload)[0]
            for hook in ("confirm-rollout", "confirm-promotion", "rollback")}


def plant(path, outcomes, digest="img@sha256:a"):
    planted = iter(WindowResult(o, {"clean": "pass", "bad": "block"}.get(o, o), "planted") for o in outcomes)
    make_watch(path, [], windows=len(outcomes), evaluate=lambda i, now: next(planted), digest=digest).run()


def test_answers_follow_the_latest_decision(served):
    path, port, _ = served
    status, body = request(port, "GET", "/argo")
    assert status == 200 and body["phase"] == "Failed" and body["reason"].startswith("missing data: no audit log")
    assert hooks(port) == {"confirm-rollout": 412, "confirm-promotion": 412, "rollback": 200}
    plant(path, ["clean"])
    status, body = request(port, "GET", "/argo")
    assert body["phase"] == "Successful" and body["ok"] is True and body["action"] == "hold"
    assert body["candidate_weight"] == 10 and body["candidate_digest"] == "img@sha256:a" and body["record_seq"] == 0
    assert hooks(port) == {"confirm-rollout": 200, "confirm-promotion": 200, "rollback": 412}
    plant(path, ["inconclusive"])
    assert request(port, "GET", "/argo")[1]["phase"] == "Inconclusive"
    assert hooks(port) == {"confirm-rollout": 412, "confirm-promotion": 412, "rollback": 412}
    plant(path, ["bad"])
    status, body = request(port, "GET", "/argo")
    assert body["phase"] == "Failed" and body["action"] == "route_back" and body["record_seq"] == 2
    assert hooks(port) == {"confirm-rollout": 412, "confirm-promotion": 412, "rollback": 200}
    status, body = request(port, "POST", "/flagger/rollback", FLAGGER)
    assert body["rollback"] is True and body["hook"] == "rollback"


def test_confirm_promotion_waits_for_the_watchs_own_promotion_when_it_promotes(tmp_path):
    path = obs_contract(tmp_path, {"promote_after": 2})
    contract, _ = load_contract(path)
    server = make_server(contract, tmp_path / "c.yaml.watch.jsonl", host="127.0.0.1", port=0, stale_s=60,
                         watch_promotes=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        plant(path, ["clean"])
        assert hooks(port) == {"confirm-rollout": 200, "confirm-promotion": 412, "rollback": 412}
        plant(path, ["clean"])  # the second clean window in a row: the watch promotes
        assert request(port, "GET", "/argo")[1]["action"] == "promote"
        assert hooks(port) == {"confirm-rollout": 200, "confirm-promotion": 200, "rollback": 412}
    finally:
        server.shutdown()
        server.server_close()


def test_stale_foreign_or_broken_logs_are_missing_data(served, tmp_path):
    path, port, clock = served
    plant(path, ["clean"])
    clock["offset"] = 61.0
    body = request(port, "GET", "/argo")[1]
    assert body["phase"] == "Failed" and "stale after 60 s" in body["reason"]
    assert hooks(port)["rollback"] == 200
    clock["offset"] = 0.0
    payload = {**FLAGGER, "metadata": {"candidate_digest": "img@sha256:other"}}
    assert hooks(port, payload) == {"confirm-rollout": 412, "confirm-promotion": 412, "rollback": 200}
    assert hooks(port, {**FLAGGER, "metadata": {"candidate_digest": "img@sha256:a"}})["confirm-rollout"] == 200
    log = tmp_path / "c.yaml.watch.jsonl"
    log.write_bytes(log.read_bytes().replace(b'"outcome":"clean"', b'"outcome":"bad"'))
    body = request(port, "GET", "/argo")[1]
    assert body["phase"] == "Failed" and "does not verify" in body["reason"]


def test_a_log_of_another_contract_is_not_answered_from(tmp_path):
    path = obs_contract(tmp_path)
    plant(path, ["clean"])
    (tmp_path / "x").mkdir()
    other = obs_contract(tmp_path / "x", {"trip_after": 3})
    contract, _ = load_contract(other)
    server = make_server(contract, tmp_path / "c.yaml.watch.jsonl", host="127.0.0.1", port=0, stale_s=60)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        body = request(server.server_address[1], "GET", "/argo")[1]
    finally:
        server.shutdown()
        server.server_close()
    assert body["phase"] == "Failed" and "another contract" in body["reason"]


def test_hostile_requests_are_refused_and_do_not_block_others(served):
    _, port, _ = served
    silent = socket.create_connection(("127.0.0.1", port))  # a client that never sends a byte
    try:
        assert request(port, "POST", "/flagger/rollback", b"x" * (MAX_BODY + 1))[0] == 413
        assert request(port, "POST", "/flagger/rollback", b"[1, 2]")[0] == 400
        assert request(port, "POST", "/flagger/rollback", b"{not json")[0] == 400
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.putrequest("POST", "/flagger/rollback")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        conn.send(b"5\r\nhello\r\n0\r\n\r\n")
        assert conn.getresponse().status == 411
        conn.close()
        assert request(port, "POST", "/flagger/delete-everything", FLAGGER)[0] == 404
        assert request(port, "GET", "/../../etc/passwd")[0] == 404
        assert request(port, "PUT", "/argo", b"{}")[0] == 405
        status, body = request(port, "GET", "/argo")
        assert status == 200 and "<" not in json.dumps(body)
    finally:
        silent.close()


def test_a_flood_of_idle_connections_is_capped_and_the_server_recovers(tmp_path):
    import select

    from promote.watch.serve import MAX_CONNECTIONS

    contract, _ = load_contract(obs_contract(tmp_path))
    server = make_server(contract, tmp_path / "log.jsonl", host="127.0.0.1", port=0, stale_s=60,
                         socket_timeout=120)  # idle connections inside the cap stay open for the whole test
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    port = server.server_address[1]
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_CONNECTIONS + 10)]
    try:
        closed: set[int] = set()
        deadline = time.monotonic() + 60
        while len(closed) < 10 and time.monotonic() < deadline:
            readable, _, _ = select.select([c for i, c in enumerate(idle) if i not in closed], [], [], 1.0)
            for conn in readable:
                assert conn.recv(1) == b""  # closed unanswered: over the cap
                closed.add(idle.index(conn))
        time.sleep(0.5)
        assert len(closed) == 10 and not select.select([c for i, c in enumerate(idle) if i not in closed],
                                                       [], [], 0)[0]  # the 64 inside the cap are held open
    finally:
        for conn in idle:
            conn.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # their slots come back as the server sees them closed
        try:
            if request(port, "GET", "/healthz")[0] == 200:
                break
        except (ConnectionError, http.client.HTTPException, TimeoutError):
            time.sleep(0.2)
    try:
        assert request(port, "GET", "/healthz") == (200, {"ok": True})
    finally:
        server.shutdown()
        server.server_close()


def test_cli_serve_listens_on_loopback_answers_and_stops_on_sigterm(tmp_path):
    path = obs_contract(tmp_path)  # the default staleness, 3 windows of 100 ms, is too short here: --stale-after
    plant(path, ["clean"])
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "promote.cli", "serve", str(path), "--port", "0",
                             "--stale-after", "10m"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        assert match, line + proc.stderr.read()[-2000:] if proc.poll() is not None else line
        status, body = request(int(match.group(1)), "GET", "/argo")
        assert status == 200 and body["phase"] == "Successful", body
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143


def test_every_watch_and_serve_flag_is_documented():
    from promote.commands.watch import serve, watch

    cli_doc = (REPO / "docs" / "cli.md").read_text()
    for command in (watch, serve):
        section = cli_doc.split(f"## `promote {command.name} CONTRACT`", 1)[1].split("\n## ", 1)[0]
        for option in command.params:
            for flag in getattr(option, "opts", []):
                if flag.startswith("--"):
                    assert f"`{flag}" in section, f"docs/cli.md, promote {command.name}: {flag} is not documented"
