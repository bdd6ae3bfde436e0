"""Issue 19 (HTTP half): the three clients — the `openai` kernel's, Prometheus', GitHub's — against a
hostile server (tests/hostile_http.py) that redirects to another port, drips bytes, truncates,
inflates gzip, misspells ids, echoes headers and breaks HTTP itself. All three go through
promote.http, so each fault is tried on each client: same rule, same kind of failure."""

from __future__ import annotations

import base64
import threading
import time

import pytest
from hostile_http import (
    BAD_STATUS_LINE,
    LINE_TOO_LONG,
    TOO_MANY_HEADERS,
    Hostile,
    drip,
    drip_headers,
    echo_headers,
    gzip_bomb,
    huge,
    json_reply,
    raw,
    redirect,
    truncated,
)

from promote import redact
from promote.github.api import GitHubAPI, GitHubError
from promote.kernels import openai_api as apis
from promote.kernels.http_client import Client, HttpFailure
from promote.observability.prometheus import MAX_BODY, PrometheusClient, PrometheusQueryError, PrometheusUnavailable

KEY = "sk-hostile-canary-0123456789"
PROM_OK = {"status": "success", "data": {"resultType": "vector", "result": []}}


pytestmark = pytest.mark.usefixtures("fresh_redaction")


@pytest.fixture
def server():
    with Hostile() as hostile:
        yield hostile


@pytest.fixture
def other():
    """A second server on another port: where a hostile redirect points."""
    with Hostile() as hostile:
        yield hostile


def prometheus(url: str, monkeypatch, timeout_s: float = 10.0, kind: str = "bearer") -> PrometheusClient:
    monkeypatch.setenv("PROM_TOKEN", KEY)
    monkeypatch.setenv("PROM_USER", "promuser")
    monkeypatch.setenv("PROM_PASS", "prom-password-42")
    auth = {"kind": "bearer", "token_env": "PROM_TOKEN"} if kind == "bearer" else \
        {"kind": "basic", "username_env": "PROM_USER", "password_env": "PROM_PASS"}
    return PrometheusClient(url, timeout_s=timeout_s, auth=auth)


def github(url: str, timeout_s: float = 10.0) -> GitHubAPI:
    return GitHubAPI(KEY, api_url=url, timeout_s=timeout_s, max_attempts=1, sleep=lambda s: None)


# Each client asked once for a path of the hostile server; what it raises must be its own typed error.
CLIENTS = {
    "openai-post": (lambda s, mp, t: Client(api_key=KEY, timeout_s=t, retries=0, origin_url=s.url("/v1"))
                    .post(s.url("/v1/completions"), {"prompt": [1]}, apis.max_answer_bytes(8, apis.ALL, 32000)),
                    "/v1/completions", HttpFailure),
    "openai-get": (lambda s, mp, t: Client(api_key=KEY, timeout_s=t, retries=0).get(s.url("/version")),
                   "/version", HttpFailure),
    "openai-metrics": (lambda s, mp, t: Client(api_key=KEY, timeout_s=t, retries=0).get_bytes(s.url("/metrics")),
                       "/metrics", HttpFailure),
    "prometheus": (lambda s, mp, t: prometheus(s.url(), mp, t).query("up", 0.0), "/api/v1/query",
                   PrometheusUnavailable),
    "github": (lambda s, mp, t: github(s.url("/api/v3"), t).get_json("user"), "/api/v3/user", GitHubError),
}


def ask(name: str, server: Hostile, monkeypatch, timeout_s: float = 10.0):
    call, _, _ = CLIENTS[name]
    return call(server, monkeypatch, timeout_s)


def route(name: str) -> str:
    return CLIENTS[name][1]


def raises(name: str) -> type[Exception]:
    return CLIENTS[name][2]


# -- item 1: credentials never follow a redirect to another origin


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("name", list(CLIENTS))
def test_no_credential_follows_a_redirect_to_another_port(name, code, server, other, monkeypatch):
    other.route(route(name), json_reply({"status": "success", "data": {}}))
    server.route(route(name), redirect(other.url(route(name)), code))
    with pytest.raises(raises(name), match="another origin"):
        ask(name, server, monkeypatch)
    assert other.log == []  # not even a request without the header: the answer would come from elsewhere
    assert server.log[0].headers.get("authorization") == f"Bearer {KEY}"


def test_a_same_origin_redirect_keeps_the_key_and_is_followed(server):
    server.route("/old/completions", redirect("/v1/completions", 307))
    server.route("/v1/completions", json_reply({"ok": True}))
    answer = Client(api_key=KEY, origin_url=server.url("/v1")).post(server.url("/old/completions"), {"x": 1})
    assert answer == {"ok": True}
    assert [(r.path, r.method, r.headers.get("authorization")) for r in server.log] == [
        ("/old/completions", "POST", f"Bearer {KEY}"), ("/v1/completions", "POST", f"Bearer {KEY}")]


def test_the_key_is_sent_only_to_the_origin_it_was_given(server, other):
    other.route("/v1/completions", json_reply({"ok": True}))
    Client(api_key=KEY, origin_url=server.url("/v1")).post(other.url("/v1/completions"), {"x": 1})
    assert "authorization" not in other.log[0].headers


def test_without_credentials_another_origin_answers_and_is_named(server, other):
    """Item 18: a 404 from where a redirect led is not blamed on the API: the failure names who answered."""
    other.route("/elsewhere", json_reply({"error": "nope"}, 404))
    server.route("/v1/completions", redirect(other.url("/elsewhere"), 307))
    with pytest.raises(HttpFailure) as caught:
        Client(retries=0).post(server.url("/v1/completions"), {"x": 1})
    assert caught.value.status == 404 and caught.value.answered_by == other.url("/elsewhere")


# -- item 2: a total deadline per request


@pytest.mark.parametrize("fault", ["drip-body", "drip-headers"])
@pytest.mark.parametrize("name", list(CLIENTS))
def test_a_dripping_server_meets_the_total_deadline(name, fault, server, monkeypatch):
    server.route(route(name), drip(server) if fault == "drip-body" else drip_headers(server))
    start = time.monotonic()
    with pytest.raises(raises(name)) as caught:
        ask(name, server, monkeypatch, timeout_s=1.0)
    took = time.monotonic() - start
    assert "1" in str(caught.value) and ("within" in str(caught.value) or "timeout" in str(caught.value).lower())
    assert took < 30  # the drip never ends: only a total deadline stops the client at all


def test_time_to_first_token_closes_the_stream_at_the_first_event(server):
    """The TTFT pass reads up to the first `data:` event and hangs up; a stream that never ends after it
    must not hold the request (before: the whole stream was read, forever)."""
    event = b'data: {"choices": [{"text": "a"}]}\n\n'
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: identity\r\n\r\n" + event
    server.route("/v1/completions", drip(server, head=head, every_s=0.2, byte=b": keep-alive\n"))
    done: list[float] = []
    worker = threading.Thread(target=lambda: done.append(
        Client(timeout_s=60, retries=0).first_event_seconds(server.url("/v1/completions"), {"stream": True})),
        daemon=True)
    worker.start()
    worker.join(20)
    assert done and done[0] >= 0


def test_a_chunked_event_stream_is_read_up_to_its_first_event(server):
    """vLLM streams server-sent events in chunked transfer encoding: the first chunk's event is enough."""
    event = b'data: {"choices": [{"text": "a"}]}\n\n'
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n" % len(event) + event + b"\r\n")
    server.route("/v1/completions", drip(server, head=head, every_s=0.2, byte=b"2\r\n:\n\r\n"))
    seconds = Client(timeout_s=5, retries=0).first_event_seconds(server.url("/v1/completions"), {"stream": True})
    assert 0 <= seconds < 5


def test_a_stream_without_an_event_is_malformed_not_a_hang(server):
    server.route("/v1/completions", raw(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\ndata: [DONE]"))
    with pytest.raises(HttpFailure, match="no `data:` event") as caught:
        Client(retries=0).first_event_seconds(server.url("/v1/completions"), {"stream": True})
    assert caught.value.kind == "malformed_json"


# -- item 4: every body capped, decompression bounded


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("name", list(CLIENTS))
def test_an_answer_over_the_cap_is_refused_naming_the_url_and_the_limit(name, chunked, server, monkeypatch):
    server.route(route(name), huge(80 * 2**20, chunked=chunked))
    with pytest.raises(raises(name)) as caught:
        ask(name, server, monkeypatch)
    text = str(caught.value)
    assert server.url(route(name)) in text and "MiB" in text and "legitimately" in text


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("name", ["openai-metrics", "prometheus", "github"])
def test_a_gzip_bomb_is_inflated_only_up_to_the_cap(name, chunked, server, monkeypatch):
    server.route(route(name), gzip_bomb(100 * 2**20, chunked=chunked))
    with pytest.raises(raises(name)) as caught:
        ask(name, server, monkeypatch)
    assert "after decompression" in str(caught.value)


def test_the_scoring_cap_is_derived_from_what_was_asked(server):
    """top_k: 5 on a 4-token prompt can legitimately return 4 positions × 9 entries: 10 MiB cannot be it."""
    limit = apis.max_answer_bytes(4, 5, None)
    assert limit < 2**20
    assert apis.max_answer_bytes(4, apis.ALL, 512) < apis.max_answer_bytes(4, apis.ALL, None)
    server.route("/v1/completions", huge(10 * 2**20))
    with pytest.raises(HttpFailure) as caught:
        Client(retries=0).post(server.url("/v1/completions"), {"x": 1}, max_body=limit)
    assert caught.value.kind == "too_large" and f"{limit} bytes" in str(caught.value)


def test_the_prometheus_cap_is_the_documented_one(server, monkeypatch):
    server.route("/api/v1/query", huge(MAX_BODY + 1))
    with pytest.raises(PrometheusUnavailable, match=f"more than {MAX_BODY // 2**20} MiB"):
        prometheus(server.url(), monkeypatch).query("up", 0.0)


# -- item 11: a server that breaks HTTP itself


@pytest.mark.parametrize("fault", {"bad-status-line": raw(BAD_STATUS_LINE), "too-many-headers": raw(TOO_MANY_HEADERS),
                                   "line-too-long": raw(LINE_TOO_LONG),
                                   "closed-mid-body": truncated(b'{"status": "success", "data": {}}', 9),
                                   "closed-before-answer": raw(b"")}.items(), ids=lambda f: f[0])
@pytest.mark.parametrize("name", list(CLIENTS))
def test_broken_http_is_the_clients_own_error_naming_the_url(name, fault, server, monkeypatch):
    server.route(route(name), fault[1])
    with pytest.raises(raises(name)) as caught:
        ask(name, server, monkeypatch)
    assert server.url(route(name)) in str(caught.value)


def test_prometheus_answers_of_the_wrong_shape_are_unavailable(server, monkeypatch):
    client = prometheus(server.url(), monkeypatch)
    for body in ({"status": "success", "data": "x"}, {"status": "success", "data": {"resultType": "vector",
                                                                                    "result": ["a", "b"]}},
                 {"status": "success", "data": {"resultType": "vector", "result": []}, "warnings": 5},
                 {"status": "success", "data": {"resultType": "matrix", "result": [{"values": 3}]}}):
        server.route("/api/v1/query", json_reply(body))
        with pytest.raises(PrometheusUnavailable, match="cannot read"):
            client.query("up", 0.0)


# -- item 8: a Basic auth header echoed back is masked


def test_an_echoed_basic_auth_header_is_masked(server, monkeypatch):
    header = "Basic " + base64.b64encode(b"promuser:prom-password-42").decode()

    def answer(conn, request):
        json_reply({"status": "error", "errorType": "execution",
                    "error": f"denied for {request.headers.get('authorization')}"}, 422)(conn, request)

    server.route("/api/v1/query", answer)
    with pytest.raises(PrometheusQueryError) as caught:
        prometheus(server.url(), monkeypatch, kind="basic").query("up", 0.0)
    assert header in str(caught.value)  # the server did echo it …
    shown = redact.redact_message(str(caught.value))
    assert header.split()[1] not in shown and "***" in shown  # … and nothing of it is printed


def test_an_echoed_bearer_key_in_an_openai_error_is_masked(server):
    server.route("/v1/completions", echo_headers(400))
    redact.register_secret(KEY)
    with pytest.raises(HttpFailure) as caught:
        Client(api_key=KEY, retries=0).post(server.url("/v1/completions"), {"x": 1})
    assert KEY in caught.value.detail and KEY not in redact.redact_message(caught.value.detail)


# -- item 15: http(s) only


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1/x"])
def test_only_http_urls_are_fetched(url):
    with pytest.raises(HttpFailure, match="not an http") as caught:
        Client(retries=0).get(url)
    assert "root:" not in str(caught.value)


def test_a_redirect_to_a_file_url_is_refused(server):
    server.route("/version", redirect("file:///etc/passwd"))
    with pytest.raises(HttpFailure, match="not an http") as caught:
        Client(retries=0).get(server.url("/version"))
    assert caught.value.kind == "redirect"


# -- the wire time survives the new layer


def test_post_timed_is_the_wire_time_from_first_send_to_last_byte(server):
    server.route("/v1/completions", json_reply({"ok": True}))
    before = time.perf_counter()
    answer, seconds = Client().post_timed(server.url("/v1/completions"), {"x": 1})
    assert answer == {"ok": True} and 0 < seconds <= time.perf_counter() - before
