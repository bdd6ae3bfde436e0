"""Every sink and each of its options is documented (docs/watch.md "Sinks", written in docs/watch-sinks.md),
and every registered sink builds through the registry lazily."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from promote.sinks.api import SINKS

ROOT = Path(__file__).resolve().parents[1]
MODULES = {"haproxy": "haproxy", "httproute": "httproute", "argo-abort": "argo", "flagd": "flagd", "webhook": "webhook"}


def sink_docs() -> str:
    text = "".join(p.read_text() for p in (ROOT / "docs" / "watch-sinks.md", ROOT / "docs" / "watch.md") if p.exists())
    assert "## Sinks" in text
    return text


@pytest.mark.parametrize("kind", list(MODULES))
def test_each_sink_and_its_options_are_documented(kind):
    text = sink_docs()
    section = text.split(f"### `{kind}`", 1)[1].split("\n### ", 1)[0]
    keys = importlib.import_module(f"promote.sinks.{MODULES[kind]}").KEYS
    documented = set(re.findall(r"^\| `([a-z_]+)`", section, re.MULTILINE)) | set(
        re.findall(r"`([a-z_]+)`(?:,|\s\|)", section))
    assert set(keys) <= documented, sorted(set(keys) - documented)


def test_the_built_in_sinks_are_registered_and_imported_only_when_used():
    assert set(MODULES) <= set(SINKS.names())
    code = ("import sys; import promote.sinks.api as api; "
            "print(sorted(m for m in sys.modules if m.startswith('promote.sinks.') and m != 'promote.sinks.api'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "src")}).stdout.strip()
    assert out == "[]"


MINIMAL = {
    "haproxy": {"socket": "/run/haproxy.sock", "backend": "be", "candidate": "c"},
    "httproute": {"url": "https://k8s.example/apis/x", "candidate": "c"},
    "argo-abort": {"file": "rollout.yaml"},
    "flagd": {"file": "flags.json", "flag": "model", "candidate": "c", "reference": "r"},
    "webhook": {"url": "https://hooks.example/promote", "secret_env": "PROMOTE_DOC_TEST_SECRET"},
}


@pytest.mark.parametrize("kind", list(MODULES))
def test_every_sink_builds_from_a_watch_entry_and_follows_the_protocol(monkeypatch, kind):
    from promote.sinks.api import Sink
    from promote.sinks.build import build_sink

    monkeypatch.setenv("PROMOTE_DOC_TEST_SECRET", "doc-test-secret-value")
    sink = build_sink({"kind": kind, **MINIMAL[kind]}, "contract.yaml: watch.sinks[0]")
    assert isinstance(sink, Sink) and sink.name == kind


@pytest.mark.parametrize(("entry", "words"), [
    ({"kind": "haproxi"}, "did you mean `haproxy`?"),
    ({"socket": "/x"}, "`kind` is missing"),
    ("haproxy", "a sink is a mapping"),
])
def test_an_unknown_kind_is_a_usage_error_listing_the_sinks(entry, words):
    from promote.errors import UsageError
    from promote.sinks.build import build_sink

    with pytest.raises(UsageError) as caught:
        build_sink(entry, "--sink")
    assert caught.value.exit_code == 2 and words in caught.value.format_message()
    assert "`webhook`" in caught.value.format_message() or "mapping" in words


def test_a_decision_outside_0_to_100_is_refused_by_every_sink(tmp_path):
    import json

    from tests.sink_support import decision

    path = tmp_path / "flags.json"
    path.write_text(json.dumps({"flags": {"model": {"state": "ENABLED", "variants": {"r": 1, "c": 2},
                                                    "defaultVariant": "r"}}}))
    before = path.read_bytes()
    sink = SINKS.get("flagd")({"file": str(path), "flag": "model", "candidate": "c", "reference": "r"}, "x")
    result = sink.apply(decision("restore", 150))
    assert (result.ok, result.changed) == (False, False) and "a whole number from 0 to 100" in result.message
    assert result.read_back["candidate_weight"] == 0.0 and path.read_bytes() == before
