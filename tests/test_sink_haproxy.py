"""The ``haproxy`` sink against a real HAProxy: weights set over the runtime API, traffic follows them."""

from __future__ import annotations

import socket
import threading

import pytest
import requests

from promote.errors import UsageError
from promote.sinks.api import SINKS, Sink
from tests.haproxy_live import LiveHaproxy, NamedServer
from tests.sink_support import decision


@pytest.fixture(scope="module")
def backends():
    servers = {name: NamedServer(name) for name in ("ref", "cand")}
    yield servers
    for server in servers.values():
        server.close()


@pytest.fixture(scope="module")
def live(backends):
    proxy = LiveHaproxy({name: (server.port, 50) for name, server in backends.items()})
    yield proxy
    proxy.stop()


@pytest.fixture
def haproxy(live):
    for server in ("ref", "cand"):
        assert live.command(f"set weight be/{server} 50").strip() == ""
    return live


def sink(live: LiveHaproxy, **options):
    return SINKS.get("haproxy")({"socket": live.socket_path, "backend": "be", "candidate": "cand",
                                 "reference": "ref", **options}, "--sink haproxy")


def weights(live: LiveHaproxy) -> dict[str, str]:
    return {s: live.command(f"get weight be/{s}").strip() for s in ("ref", "cand")}


def test_route_back_sets_the_weights_and_traffic_reaches_only_the_reference(haproxy):
    with requests.Session() as session:  # a client keeping its connection open across the change
        assert {session.get(haproxy.url, timeout=5).text for _ in range(8)} == {"ref", "cand"}
        result = sink(haproxy).apply(decision("route_back"))
        assert (result.ok, result.changed, result.dry_run) == (True, True, False), result.message
        assert {session.get(haproxy.url, timeout=5).text for _ in range(10)} == {"ref"}
    assert isinstance(sink(haproxy), Sink)
    assert result.read_back["weights"] == {"cand": 0, "ref": 100}
    assert result.read_back["initial"] == {"cand": 50, "ref": 50}
    assert weights(haproxy) == {"ref": "100 (initial 50)", "cand": "0 (initial 50)"}
    assert haproxy.hits(20) == {"ref": 20}


def test_the_same_decision_twice_changes_nothing_the_second_time(haproxy):
    first = sink(haproxy).apply(decision("route_back"))
    second = sink(haproxy).apply(decision("route_back"))
    assert first.changed and first.ok
    assert (second.ok, second.changed) == (True, False)
    assert second.read_back == first.read_back
    assert "already" in second.message


def test_restore_gives_the_candidate_its_canary_weight_back(haproxy):
    sink(haproxy).apply(decision("route_back"))
    result = sink(haproxy).apply(decision("restore", 20))
    assert result.ok and result.changed
    assert result.read_back["weights"] == {"cand": 20, "ref": 80}
    assert weights(haproxy) == {"ref": "80 (initial 50)", "cand": "20 (initial 50)"}
    assert set(haproxy.hits(10)) == {"ref", "cand"}
    promoted = sink(haproxy).apply(decision("promote"))
    assert promoted.ok and promoted.read_back["weights"] == {"cand": 100, "ref": 0}
    assert haproxy.hits(10) == {"cand": 10}


def test_the_tcp_stats_socket_works_the_same(haproxy):
    tcp = sink(haproxy, socket=f"tcp://127.0.0.1:{haproxy.stats_port}")
    result = tcp.apply(decision("route_back"))
    assert result.ok and result.changed and result.read_back["socket"] == f"tcp://127.0.0.1:{haproxy.stats_port}"
    assert weights(haproxy)["cand"] == "0 (initial 50)"


def test_without_a_reference_only_the_candidate_weight_is_set(haproxy):
    alone = SINKS.get("haproxy")({"socket": haproxy.socket_path, "backend": "be", "candidate": "cand"}, "x")
    result = alone.apply(decision("restore", 7))
    assert result.ok and result.read_back["weights"] == {"cand": 7}
    assert weights(haproxy) == {"ref": "50 (initial 50)", "cand": "7 (initial 50)"}


def test_dry_run_reads_the_state_back_and_changes_nothing(haproxy):
    result = sink(haproxy).apply(decision("route_back"), dry_run=True)
    assert (result.ok, result.dry_run, result.changed) == (True, True, False)
    assert result.read_back["weights"] == {"cand": 50, "ref": 50}
    assert "would set be/cand weight 50 -> 0" in result.message
    assert weights(haproxy) == {"ref": "50 (initial 50)", "cand": "50 (initial 50)"}


def test_hold_changes_nothing_and_reads_back(haproxy):
    result = sink(haproxy).apply(decision("hold", 0))
    assert (result.ok, result.changed) == (True, False)
    assert result.read_back["weights"] == {"cand": 50, "ref": 50}
    assert sink(haproxy).read_back()["weights"] == {"cand": 50, "ref": 50}


@pytest.mark.parametrize(("options", "words"), [
    ({"backend": "be", "candidate": "c"}, ["`socket` is required"]),
    ({"socket": "/s", "candidate": "c"}, ["`backend` is required"]),
    ({"socket": "/s", "backend": "be", "candidate": "c", "weight": 3}, ["`weight` is not an option", "`socket`"]),
    ({"socket": "/s", "backend": "be bad", "candidate": "c"}, ["`backend` must be an HAProxy name"]),
    ({"socket": "/s", "backend": "be", "candidate": "c", "reference": "c"}, ["`reference` must name another"]),
    ({"socket": "tcp://host", "backend": "be", "candidate": "c"}, ["tcp://HOST:PORT"]),
    ({"socket": "/s", "backend": "be", "candidate": "c", "timeout_s": 0}, ["`timeout_s` must be a number"]),
    ({"socket": "/s", "backend": "be", "candidate": "c", "token": "x"}, ["`token_env`"]),
    ({"socket": 5, "backend": "be", "candidate": "c"}, ["`socket` must be a string"]),
])
def test_bad_options_are_usage_errors_naming_where_and_the_key(options, words):
    with pytest.raises(UsageError) as caught:
        SINKS.get("haproxy")(options, "contract.yaml: watch.sinks[0]")
    assert caught.value.exit_code == 2
    text = caught.value.format_message()
    assert text.startswith("contract.yaml: watch.sinks[0]: ")
    for word in words:
        assert word in text


def test_an_unreachable_socket_is_ok_false_not_an_exception(tmp_path):
    gone = SINKS.get("haproxy")({"socket": str(tmp_path / "none.sock"), "backend": "be", "candidate": "c"}, "x")
    result = gone.apply(decision("route_back"))
    assert (result.ok, result.changed) == (False, False)
    assert "cannot reach HAProxy's stats socket" in result.message and "error" in result.read_back
    assert "error" in gone.read_back()


def test_an_unknown_server_is_ok_false_with_haproxys_answer(haproxy):
    wrong = SINKS.get("haproxy")({"socket": haproxy.socket_path, "backend": "be", "candidate": "nope"}, "x")
    result = wrong.apply(decision("route_back"))
    assert not result.ok and "No such server." in result.message


def test_a_socket_below_level_admin_is_refused_and_reported(backends):
    user = LiveHaproxy({name: (server.port, 50) for name, server in backends.items()}, admin=False)
    try:
        result = sink(user).apply(decision("route_back"))
        assert (result.ok, result.changed) == (False, False)
        assert "HAProxy refused `set weight be/" in result.message and "ermission denied" in result.message
        assert result.read_back["weights"] == {"cand": 50, "ref": 50}
    finally:
        user.stop()


def _hostile(behaviour: str) -> tuple[socket.socket, threading.Thread]:
    """A TCP 'stats socket' that accepts and then never answers, or floods."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            if behaviour == "flood":
                try:
                    while True:
                        conn.sendall(b"1" * 65536)
                except OSError:
                    return
            conn.recv(100)
            threading.Event().wait(3)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


@pytest.mark.parametrize(("behaviour", "words"), [("silent", "did not answer"), ("flood", "more than 65536 bytes")])
def test_a_hostile_socket_is_ok_false_within_the_deadline(behaviour, words):
    server, thread = _hostile(behaviour)
    try:
        port = server.getsockname()[1]
        hostile = SINKS.get("haproxy")({"socket": f"tcp://127.0.0.1:{port}", "backend": "be", "candidate": "c",
                                        "timeout_s": 0.5}, "x")
        result = hostile.apply(decision("route_back"))
        assert not result.ok and words in result.message
    finally:
        server.close()
