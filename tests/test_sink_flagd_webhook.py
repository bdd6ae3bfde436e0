"""The ``flagd`` sink (an atomic rewrite of a flag file, checked against flagd's schema) and the ``webhook``
sink (a signed POST to a real local receiver that verifies the signature)."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from promote.errors import UsageError
from promote.sinks.api import SINKS
from promote.sinks.schemas import problems
from tests.prometheus_live import free_port
from tests.sink_support import decision

FLAGS = {
    "$schema": "https://flagd.dev/schema/v0/flags.json",
    "flags": {
        "model": {"state": "ENABLED", "variants": {"reference": "llama-ref", "candidate": "llama-cand"},
                  "defaultVariant": "reference",
                  "targeting": {"fractional": [["reference", 80], ["candidate", 20]]}},
        "other": {"state": "DISABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off"},
    },
}


def flag_file(tmp_path, document=FLAGS, suffix=".json"):
    path = tmp_path / f"flags{suffix}"
    path.write_text(json.dumps(document) if suffix == ".json" else yaml.safe_dump(document))
    return path


def flagd(path, **options):
    return SINKS.get("flagd")({"file": str(path), "flag": "model", "candidate": "candidate", "reference": "reference",
                               **options}, "--sink flagd")


def load(path):
    return json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())


# -- flagd ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_route_back_rewrites_the_flag_and_reads_it_back(tmp_path, suffix):
    path = flag_file(tmp_path, suffix=suffix)
    result = flagd(path).apply(decision("route_back"))
    assert (result.ok, result.changed, result.dry_run) == (True, True, False), result.message
    assert result.read_back["candidate_weight"] == 0.0
    stored = load(path)
    assert stored["flags"]["model"]["targeting"] == {"fractional": [["reference", 100], ["candidate", 0]]}
    assert stored["flags"]["model"]["defaultVariant"] == "reference"
    assert stored["flags"]["other"] == FLAGS["flags"]["other"] and stored["$schema"] == FLAGS["$schema"]
    assert problems("flagd", stored) == []
    again = flagd(path).apply(decision("route_back"))
    assert (again.ok, again.changed) == (True, False)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_restore_promote_and_bucketing(tmp_path):
    path = flag_file(tmp_path)
    assert flagd(path).read_back()["candidate_weight"] == 20.0
    restored = flagd(path, bucket_by="user_id").apply(decision("restore", 35))
    assert restored.ok and restored.read_back["candidate_weight"] == 35.0
    assert load(path)["flags"]["model"]["targeting"] == {
        "fractional": [{"var": "user_id"}, ["reference", 65], ["candidate", 35]]}
    promoted = flagd(path).apply(decision("promote"))
    assert promoted.ok and promoted.read_back["candidate_weight"] == 100.0
    assert load(path)["flags"]["model"]["defaultVariant"] == "candidate"


def evaluate(path, n: int = 2000) -> dict[str, int]:
    """Which model ``n`` users get from the file, as flagd's own evaluator (openfeature-flagd-core, the engine of
    flagd's in-process providers: the same murmur3 bucketing of the fractional operator) resolves the flag."""
    from openfeature.contrib.tools.flagd.core import FlagdCore
    from openfeature.evaluation_context import EvaluationContext

    core = FlagdCore()
    core.set_flags(json.dumps(load(path)))
    counts: dict[str, int] = {}
    for user in range(n):
        value = core.resolve_string_value("model", "none", EvaluationContext(targeting_key=f"user-{user}")).value
        counts[value] = counts.get(value, 0) + 1
    return counts


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_flagds_own_evaluator_sends_the_decided_share_to_the_candidate(tmp_path, suffix):
    path = flag_file(tmp_path, suffix=suffix)
    before = evaluate(path)
    assert set(before) == {"llama-ref", "llama-cand"} and 300 < before["llama-cand"] < 500  # 20% of 2000
    assert flagd(path).apply(decision("route_back")).ok
    assert evaluate(path) == {"llama-ref": 2000}
    assert flagd(path, bucket_by="targetingKey").apply(decision("restore", 50)).ok
    assert 900 < evaluate(path).get("llama-cand", 0) < 1100
    assert flagd(path).apply(decision("promote")).ok
    assert evaluate(path) == {"llama-cand": 2000}


def test_flagd_dry_run_and_hold_leave_the_file_byte_for_byte(tmp_path):
    path = flag_file(tmp_path)
    before = path.read_bytes()
    dry = flagd(path).apply(decision("route_back"), dry_run=True)
    hold = flagd(path).apply(decision("hold"))
    assert (dry.ok, dry.dry_run, dry.changed) == (True, True, False) and "would rewrite" in dry.message
    assert dry.read_back["candidate_weight"] == 20.0 and (hold.ok, hold.changed) == (True, False)
    assert path.read_bytes() == before


@pytest.mark.parametrize(("change", "words"), [
    (lambda d: d["flags"].pop("model"), "no flag 'model'"),
    (lambda d: d["flags"]["model"]["variants"].pop("candidate"), "has no variant 'candidate'"),
    (lambda d: d["flags"]["other"].update(state="ON"), "not a valid flagd"),
    (lambda d: d.update(flags=[{"key": "model"}]), "array form"),
])
def test_a_flag_file_the_sink_cannot_use_is_ok_false_and_untouched(tmp_path, change, words):
    document = copy.deepcopy(FLAGS)
    change(document)
    path = flag_file(tmp_path, document)
    before = path.read_bytes()
    result = flagd(path).apply(decision("route_back"))
    assert (result.ok, result.changed) == (False, False) and words in result.message
    assert path.read_bytes() == before


def test_a_missing_or_unreadable_flag_file_is_ok_false(tmp_path):
    assert "cannot read the target" in flagd(tmp_path / "none.json").apply(decision("route_back")).message
    (tmp_path / "bad.json").write_text("{not json")
    assert "is not valid JSON" in flagd(tmp_path / "bad.json").apply(decision("route_back")).message


@pytest.mark.parametrize(("options", "words"), [
    ({"flag": "m", "candidate": "c", "reference": "r"}, "`file` is required"),
    ({"file": "f", "candidate": "c", "reference": "r"}, "`flag` is required"),
    ({"file": "f", "flag": "m", "candidate": "c", "reference": "c"}, "`reference` must name another variant"),
    ({"file": "f", "flag": "m", "candidate": "c", "reference": "r", "weights": 1}, "`weights` is not an option"),
])
def test_flagd_bad_options(options, words):
    with pytest.raises(UsageError) as caught:
        SINKS.get("flagd")(options, "--sink flagd")
    assert caught.value.exit_code == 2 and words in caught.value.format_message()


# -- webhook --------------------------------------------------------------------------------------------

SECRET = "webhook-signing-secret-42"


class Receiver:
    """A real HTTP receiver that verifies ``X-Promote-Signature`` as docs/watch.md tells receivers to."""

    def __init__(self, secret: str, status: int = 204) -> None:
        self.status, self.port, self.deliveries = status, free_port(), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
                valid = hmac.compare_digest(expected, self.headers.get("X-Promote-Signature", ""))
                outer.deliveries.append({"valid": valid, "body": json.loads(body),
                                         "delivery": self.headers.get("X-Promote-Delivery")})
                code = (outer.status if valid else 401)
                self.send_response(code)
                self.send_header("Content-Length", "12")
                self.end_headers()
                self.wfile.write(b"bad request!" if code >= 300 else b"ok, noted.  ")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/promote"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(monkeypatch):
    monkeypatch.setenv("PROMOTE_WEBHOOK_SECRET", SECRET)
    server = Receiver(SECRET)
    yield server
    server.close()


def webhook(url: str, **options):
    return SINKS.get("webhook")({"url": url, "secret_env": "PROMOTE_WEBHOOK_SECRET", **options}, "--sink webhook")


def test_a_decision_is_posted_signed_and_verified_by_the_receiver(receiver):
    sink = webhook(receiver.url)
    result = sink.apply(decision("route_back"))
    assert (result.ok, result.changed) == (True, True), result.message
    (delivery,) = receiver.deliveries
    assert delivery["valid"] and delivery["body"] == decision("route_back").to_json()
    assert result.read_back["delivered"] == delivery["delivery"]
    again = sink.apply(decision("route_back"))
    assert (again.ok, again.changed) == (True, False) and len(receiver.deliveries) == 1
    held = sink.apply(decision("hold", window=4))
    assert held.ok and held.changed and receiver.deliveries[-1]["body"]["action"] == "hold"
    assert SECRET not in json.dumps([r.to_json() for r in (result, again, held)]) + repr(sink)


def test_a_wrong_secret_is_refused_by_the_receiver_and_reported(receiver, monkeypatch):
    monkeypatch.setenv("OTHER_SECRET", "not-the-receivers-secret")
    result = webhook(receiver.url, secret_env="OTHER_SECRET").apply(decision("route_back"))
    assert (result.ok, result.changed) == (False, False) and "401" in result.message
    assert receiver.deliveries[0]["valid"] is False and "not-the-receivers-secret" not in result.message


def test_webhook_dry_run_sends_nothing(receiver):
    result = webhook(receiver.url).apply(decision("route_back"), dry_run=True)
    assert (result.ok, result.dry_run, result.changed) == (True, True, False) and receiver.deliveries == []
    assert "would POST the decision" in result.message


def test_a_receiver_error_or_no_receiver_is_ok_false(receiver):
    receiver.status = 503
    failed = webhook(receiver.url).apply(decision("route_back"))
    assert not failed.ok and "503" in failed.message and "bad request!" in failed.message
    receiver.status = 204
    retried = webhook(receiver.url).apply(decision("route_back"))  # not delivered before: sent again
    assert retried.ok and retried.changed and len(receiver.deliveries) == 2
    gone = webhook(f"http://127.0.0.1:{free_port()}/x", timeout_s=2).apply(decision("route_back"))
    assert not gone.ok and "could not POST" in gone.message


@pytest.mark.parametrize(("options", "words"), [
    ({"secret_env": "PROMOTE_WEBHOOK_SECRET"}, "`url` is required"),
    ({"url": "http://127.0.0.1/x"}, "`secret_env` is required"),
    ({"url": "http://127.0.0.1/x", "secret": "abc"}, "name that variable with `secret_env`"),
    ({"url": "http://127.0.0.1/x", "secret_env": "UNSET_SECRET_VAR"}, "names $UNSET_SECRET_VAR, which is not set"),
    ({"url": "127.0.0.1/x", "secret_env": "PROMOTE_WEBHOOK_SECRET"}, "must be an http:// or https:// URL"),
])
def test_webhook_bad_options(monkeypatch, options, words):
    monkeypatch.setenv("PROMOTE_WEBHOOK_SECRET", SECRET)
    monkeypatch.delenv("UNSET_SECRET_VAR", raising=False)
    with pytest.raises(UsageError) as caught:
        SINKS.get("webhook")(options, "--sink webhook")
    text = caught.value.format_message()
    assert caught.value.exit_code == 2 and text.startswith("--sink webhook: `") and words in text
    assert SECRET not in text
