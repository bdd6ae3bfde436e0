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
