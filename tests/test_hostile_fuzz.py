"""Fuzzing the files promote reads from elsewhere (issue 19): partial files with mutated envelopes and
states for `promote merge`, and report JSON for `promote render` and `comment --report`. Every input
ends in a report or a PromoteError (exit 2, or 3 when merged counts disagree) — never another
exception (an internal error) — and within a bounded amount of memory (tracemalloc peak).

Deterministic (``derandomize``, no example database) and sized to run in well under 30 s.
"""

from __future__ import annotations

import base64
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from conftest import MiniProject
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reports import clause, make_report, normal_report

from promote.errors import PromoteError
from promote.publish import comment_request_for
from promote.report.load import load_report
from promote.report.render import RENDERERS
from promote.run import run_merge, write_shard
from promote.scale.partial import MAGIC

MEMORY_LIMIT = 256 * 2**20  # bytes a single merge or render of these small inputs may peak at
FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=60,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])

HOSTILE_TEXT = st.sampled_from(["`", "``x``", "\u202e", "<img src=x>", "|", "\n::error::x", "@team", "a" * 5000,
                                "\udcff", "Infinity", "-1", "1e400", ""])
LEAF = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12) | HOSTILE_TEXT)
VALUE = st.recursive(LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                          max_size=3), max_leaves=8)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc[:8]):  # a long list: its first entries stand for the rest
            out += _paths(value, (*prefix, i))
    return out


def _mutate(doc: Any, data: st.DataObject, rounds: int = 3) -> Any:
    """Replace, delete or add at random paths of a JSON document (a copy)."""
    doc = json.loads(json.dumps(doc))
    for _ in range(data.draw(st.integers(1, rounds))):
        path = data.draw(st.sampled_from(_paths(doc)))
        if not path:
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        op = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if op == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif op == "add" and isinstance(parent, dict):
            parent[data.draw(st.text(max_size=6))] = data.draw(VALUE)
        else:
            parent[path[-1]] = data.draw(VALUE)
    return doc


def _bounded(call):  # noqa: ANN001, ANN202
    """Run ``call``; only a PromoteError may come out, and the traced peak must stay under the limit."""
    tracemalloc.start()
    try:
        call()
    except PromoteError as exc:
        assert exc.exit_code in (2, 3), exc.format_message()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < MEMORY_LIMIT, f"peak {peak / 2**20:.0f} MiB"


@pytest.fixture(scope="module")
def partials(tmp_path_factory) -> tuple[Path, list[Path]]:
    mini = MiniProject(tmp_path_factory.mktemp("fuzz"))
    contract = mini.contract(numerical={"noise_floor": {"perturb": ["rerun"]}})
    outs = [mini.root / f"s{i}.partial" for i in range(2)]
    for i, out in enumerate(outs):
        assert write_shard(str(contract), i, 2, out) == 0
    return mini.root, outs


@FUZZ
@given(data=st.data())
def test_merge_of_mutated_partials_is_a_report_or_a_usage_error(partials, data):
    root, outs = partials
    doc = json.loads(outs[1].read_bytes()[len(MAGIC):])
    where = data.draw(st.sampled_from(["envelope", "state", "bytes"]))
    if where == "envelope":
        doc = _mutate(doc, data)
    elif where == "state":  # inside one consumer's state document (states: stage → key → base64)
        stage = data.draw(st.sampled_from(sorted(doc["states"])))
        key = data.draw(st.sampled_from(sorted(doc["states"][stage])))
        raw = base64.b64decode(doc["states"][stage][key])
        magic, _, body = raw.partition(b"\n")
        state = _mutate(json.loads(body), data)
        doc["states"][stage][key] = base64.b64encode(magic + b"\n" + json.dumps(state).encode()).decode()
    text = MAGIC + json.dumps(doc).encode()
    if where == "bytes":
        at = data.draw(st.integers(0, len(text) - 1))
        text = text[:at] + bytes([data.draw(st.integers(0, 255))]) + text[at + 1:]
    forged = root / "forged.partial"
    forged.write_bytes(text)
    _bounded(lambda: run_merge([outs[0], forged]))


def _report_docs() -> list[dict]:
    slices = make_report([clause("kl", "fail", 2e-3, bound=1e-3),
                          clause("s-kl", "pass", 1e-4, bound=1e-3, stage="slices", slice="lang=x")])
    return [json.loads(r.to_json()) for r in (normal_report(), slices)]


@FUZZ
@given(data=st.data())
def test_render_and_comment_of_mutated_reports_are_a_rendering_or_a_usage_error(tmp_path, data):
    doc = _mutate(data.draw(st.sampled_from(_report_docs())), data, rounds=2)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), errors="surrogatepass")

    def every_rendering() -> None:
        report = load_report(path)
        for render in RENDERERS.values():
            render(report)
        comment_request_for(report, token=None)

    _bounded(every_rendering)
