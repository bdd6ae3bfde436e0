"""Hostile targets: every answer of an API server or a webhook receiver is untrusted. Whatever it does — drip,
flood, inflate, nest deeply, redirect elsewhere, echo the token back, answer non-JSON — the sink returns
``ok: false`` within its deadline, never raises, and never shows the token or sends it to another origin."""

from __future__ import annotations

import json

import pytest

from promote.sinks.api import SINKS
from tests import hostile_http as h
from tests.sink_support import decision

TOKEN = "hostile-k8s-token-abcdef123"
PATH = "/apis/gateway.networking.k8s.io/v1/namespaces/serving/httproutes/llm"


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv("K8S_TOKEN", TOKEN)
    monkeypatch.setenv("HOOK_SECRET", "hostile-hook-secret-xyz")


def route(server: h.Hostile):
    return SINKS.get("httproute")({"url": server.url(PATH), "token_env": "K8S_TOKEN", "candidate": "c",
                                   "timeout_s": 1.5}, "--sink httproute")


ANSWERS = {
    "not JSON": lambda s: h.status(200, b"<html>hello</html>"),
    "a JSON list": lambda s: h.json_reply([1, 2]),
    "nested 100000 deep": lambda s: h.status(200, b"[" * 100000 + b"]" * 100000),
    "drip": lambda s: h.drip(s),
    "drip headers": lambda s: h.drip_headers(s),
    "5 MiB body": lambda s: h.huge(5 * 2**20),
    "gzip bomb": lambda s: h.gzip_bomb(64 * 2**20),
    "cut short": lambda s: h.truncated(b'{"spec": {"rules": []}}', 5),
    "bad status line": lambda s: h.raw(b"HTTP/9 what\r\n\r\n"),
    "echoed token": lambda s: h.echo_headers(403),
}


@pytest.mark.parametrize("name", list(ANSWERS))
def test_a_hostile_api_server_is_ok_false_and_never_shows_the_token(token, name):
    with h.Hostile() as server:
        server.route(PATH, ANSWERS[name](server))
        result = route(server).apply(decision("route_back"))
    text = json.dumps(result.to_json())
    assert (result.ok, result.changed) == (False, False), text
    assert "error" in result.read_back and TOKEN not in text


def test_the_token_never_follows_a_redirect_to_another_origin(token):
    with h.Hostile() as elsewhere, h.Hostile() as server:
        elsewhere.route(PATH, h.json_reply({"kind": "HTTPRoute"}))
        server.route(PATH, h.redirect(elsewhere.url(PATH)))
        result = route(server).apply(decision("route_back"))
        assert not result.ok and "another origin" in result.message
        assert elsewhere.log == [] and server.log[0].headers.get("authorization") == f"Bearer {TOKEN}"


def test_a_hostile_webhook_receiver_is_ok_false_within_the_deadline(token):
    with h.Hostile() as server:
        server.route("/hook", h.drip(server))
        server.route("/big", h.huge(5 * 2**20))
        for path in ("/hook", "/big"):
            sink = SINKS.get("webhook")({"url": server.url(path), "secret_env": "HOOK_SECRET", "timeout_s": 1.5}, "x")
            result = sink.apply(decision("route_back"))
            assert (result.ok, result.changed) == (False, False) and "could not POST" in result.message
        assert "hostile-hook-secret-xyz" not in json.dumps([r.headers for r in server.log])


def test_a_flag_file_with_deeply_nested_targeting_is_replaced_and_never_recorded(tmp_path):
    deep = '{"!":[' * 380 + '{"var":"x"}' + "]}" * 380  # 760 levels: parses, but deeper than a log should carry
    path = tmp_path / "flags.json"
    path.write_text('{"flags": {"model": {"state": "ENABLED", "variants": {"r": 1, "c": 2}, "defaultVariant": "r", '
                    f'"targeting": {deep}}}}}}}')
    sink = SINKS.get("flagd")({"file": str(path), "flag": "model", "candidate": "c", "reference": "r"}, "x")
    before = sink.read_back()
    assert before["candidate_weight"] is None and before["targeting"] == "(targeting this sink does not read)"
    result = sink.apply(decision("route_back"))
    json.dumps(result.to_json())
    assert result.ok and result.read_back["targeting"] == {"fractional": [["r", 100], ["c", 0]]}
