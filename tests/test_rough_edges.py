"""Smaller things a user hits (issue 9, class 8): sibling imports, reproduce lines with the
environment, merge identity after ``${VAR}``, precise numbers, margins near 0, report headers and
acknowledged consistency warnings."""

from __future__ import annotations

import json
import sys

from click.testing import CliRunner

from promote.cli import cli


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, env=env)


def test_a_model_file_can_import_a_sibling_module(mini, monkeypatch):
    mini.write("sibling_helpers_r8.py", "SCALE = 1.0\n")
    mini.write("wrapped.py", """\
        from sibling_helpers_r8 import SCALE
        from model import Mini


        def build():
            return Mini(scale=SCALE)
        """)
    monkeypatch.delitem(sys.modules, "sibling_helpers_r8", raising=False)
    monkeypatch.delitem(sys.modules, "model", raising=False)
    path_before = list(sys.path)
    wrapped = mini.contract("wrapped.yaml", candidate="build")
    wrapped.write_text(wrapped.read_text().replace("model: model.py:build\n  precision: fp32\n  batch_size: 5\n"
                                                   "data:", "model: wrapped.py:build\n  precision: fp32\n"
                                                   "  batch_size: 5\ndata:"))
    assert "wrapped.py:build" in wrapped.read_text()
    result = invoke("check", str(wrapped))
    assert result.exit_code == 0, result.output
    assert "No module named" not in result.output
    assert sys.path == path_before  # the folder was on sys.path only while importing
    sys.modules.pop("sibling_helpers_r8", None)
    sys.modules.pop("model", None)
