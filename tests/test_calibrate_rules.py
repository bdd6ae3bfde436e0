"""`promote calibrate --derive` never writes a bound that cannot fail, and `calibrate` never says "No
problems" when its table does not show it (issue 20): the derivation rules over random small and
degenerate calibration sets (hypothesis), the verdict over random tables, and the command on tiny
real runs (a 2-position split, bitwise-equal kernels, a model whose forward mixes dtypes)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promote.calibrate.rules import REASONS, RULES, derive_numerical
from promote.calibrate.table import LEGEND_NOT_CLAIMED, NOT_CLAIMED, judge, summary_lines, to_markdown
from promote.cli import cli
from promote.resources import load_schema

DOCS = Path(__file__).resolve().parents[1] / "docs" / "calibration.md"
INF = math.inf
# The values each metric can take, written out here (not read from rules.py) so the test checks it.
RANGE = {"kl": (0.0, INF), "tv": (0.0, 1.0), "logit_osc": (0.0, INF), "argmax_agree": (0.0, 1.0),
         "topk_overlap": (0.0, 1.0), "entropy_ratio": (0.0, INF), "ratio_outside": (0.0, 1.0)}
CLAUSES = [("kl", "mean", "max"), ("kl", "p99", "max"), ("kl", "max", "max"), ("tv", "p99", "max"),
           ("tv", "mean", "max"), ("logit_osc", "max", "max"), ("argmax_agree", "mean", "min"),
           ("topk_overlap", "mean", "min"), ("entropy_ratio", "mean", "min"), ("entropy_ratio", "mean", "max"),
           ("entropy_ratio", "max", "max"), ("ratio_outside", "mean", "max")]


@st.composite
def calibration_sets(draw):
    """1–5 samples of 1–6 positions; values constant (at a range end, 0, 1), random in range, 0/1
    flags, all NaN, or with an inf; and a clause on one metric with a written bound."""
    metric, stat, op = draw(st.sampled_from(CLAUSES))
    lo, hi = RANGE[metric]
    sizes = draw(st.lists(st.integers(1, 6), min_size=1, max_size=5))
    n = sum(sizes)
    top = hi if math.isfinite(hi) else 50.0
    kind = draw(st.sampled_from(["low-end", "high-end", "zero", "one", "random", "flags", "nan", "inf", "near-one"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    values = {"low-end": np.full(n, lo), "high-end": np.full(n, top), "zero": np.zeros(n), "one": np.ones(n),
              "random": rng.uniform(lo, top, n), "flags": rng.integers(0, 2, n).astype(float),
              "nan": np.full(n, np.nan), "inf": np.where(np.arange(n) == 0, np.inf, 1.0),
              "near-one": 1.0 + rng.normal(0, 1e-3, n)}[kind]
    values = np.clip(values, lo, hi) if kind != "nan" and kind != "inf" else values
    written = draw(st.sampled_from([0.5, 0.99, 1.01, 1e-3]))
    clause = SimpleNamespace(id="c", metric=metric, stat=stat, max=written if op == "max" else None,
                             min=written if op == "min" else None, max_floor_ratio=None, param=None)
    seq = np.repeat(np.arange(len(sizes)), sizes)
    return clause, seq, values, kind


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=calibration_sets(), margin=st.sampled_from([0.0, 0.2, 1.0]),
       precision=st.sampled_from(["fp32", "bf16"]))
def test_every_derived_bound_lies_in_the_metrics_range_and_can_fail(case, margin, precision):
    clause, seq, values, kind = case
    lo, hi = RANGE[clause.metric]
    row = derive_numerical(clause, seq, {clause.metric: values}, 4 * values.size, margin, precision=precision,
                           ref_abs_max=30.0)
    if not row["derived"]:
        assert row["bound"] == row["written"] and row["rule"] == RULES["not_derivable"].format(reason=row["reason"])
        return
    bound = row["bound"]
    assert math.isfinite(bound) and lo <= bound <= hi, row
    witness = (hi if math.isfinite(hi) else bound + 1.0) if row["op"] == "max" else lo
    assert (witness > bound) if row["op"] == "max" else (witness < bound), row  # a value the metric can take fails
    if kind == "nan":
        raise AssertionError(f"derived from NaN values: {row}")
    if kind == "zero" and clause.metric in ("kl", "tv", "logit_osc"):
        assert bound > 0 and row["rule"].startswith("zero drift on the calibration split"), row  # never `max: 0`


def test_neutral_one_metrics_are_bounded_on_their_distance_from_1_and_the_rule_says_so():
    """The entropy ratio of a bf16 candidate sits near 1: the old rule (LCB × 0.8, UCB × 1.2) gave a
    band [0.8, 1.2] that no temperature bug leaves; the distance rule gives 1 ± a few 1e-4."""
    rng = np.random.default_rng(0)
    seq = np.repeat(np.arange(40), 25)
    values = {"entropy_ratio": 1.0002 + rng.normal(0, 3e-3, seq.size)}
    rows = {}
    for op in ("min", "max"):
        clause = SimpleNamespace(id=op, metric="entropy_ratio", stat="mean", max=1.1 if op == "max" else None,
                                 min=0.9 if op == "min" else None, max_floor_ratio=None, param=None)
        rows[op] = derive_numerical(clause, seq, values, 2 * seq.size, 0.2)
    assert 0.999 < rows["min"]["bound"] < 1.0 < rows["max"]["bound"] < 1.001, rows
    assert rows["max"]["bound"] - 1 == pytest.approx(1 - rows["min"]["bound"])  # as tight on both sides
    assert rows["min"]["rule"] == RULES["neutral"].format(stat="mean", sign="−")
    assert rows["max"]["rule"] == RULES["neutral"].format(stat="mean", sign="+")
    # rounded by distance from 1: the bound keeps two digits of 1 − bound
    assert len(f"{1 - rows['min']['bound']:.10g}".replace("0.", "").lstrip("0")) <= 2


def test_every_rule_text_printed_is_quoted_in_the_doc():
    doc = DOCS.read_text()
    for name, text in {**RULES, **REASONS}.items():
        quoted = f"`` {text} ``" if "`" in text else f"`{text}`"  # a code span that holds backticks
        assert quoted in doc, name


OUTCOMES = {"honest": ["pass", "fail", "inconclusive", "error"], "legit": ["pass", "fail", "inconclusive", "error"],
            "fault": ["caught", "missed", "inconclusive", "error"]}


@st.composite
def tables(draw):
    rows = []
    for i in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(list(OUTCOMES)))
        outcome = draw(st.sampled_from(OUTCOMES[kind]))
        result = {"pass": "pass", "fail": "fail", "caught": "caught", "missed": "missed"}.get(outcome, outcome)
        rows.append({"name": f"r{i}", "kind": kind, "description": "d", "outcome": outcome,
                     "covered": draw(st.booleans()) if kind == "fault" else None,
                     "cells": {"c": {"status": "x", "result": result, "slice": None, "observed": 1.0, "bounds": [],
                                     "message": "m"}}})
    return {"schema": "promote-calibration/1", "contract": {"name": "n", "path": "p", "sha256": "s"}, "samples": 3,
            "clauses": [{"id": "c", "stage": "numerics"}], "variants": rows, "skipped": []}


@settings(max_examples=200, deadline=None)
@given(doc=tables(), held_out_fails=st.booleans())
def test_the_exit_code_and_the_summary_match_the_table(doc, held_out_fails):
    judged = judge(doc, ["derived bound of `c` fails on the held-out split"] if held_out_fails else [])
    rows = judged["variants"]
    errors = any(r["outcome"] == "error" for r in rows)
    bad = held_out_fails or any(
        (r["kind"] != "fault" and r["outcome"] in ("fail", "inconclusive"))
        or (r["kind"] == "fault" and r["covered"] and r["outcome"] != "caught") for r in rows)
    assert judged["exit_code"] == (3 if errors else 1 if bad else 0)
    summary = summary_lines(judged)
    assert summary[0].startswith("No problems") == (judged["exit_code"] == 0)
    assert ("Could not evaluate (exit 3):" in summary) == errors
    markdown = to_markdown(judged)
    unclaimed = any(r["kind"] == "fault" and not r["covered"] and r["outcome"] == "missed" for r in rows)
    assert (NOT_CLAIMED in markdown) == unclaimed == (LEGEND_NOT_CLAIMED in markdown)
    assert ("❌ missed" in markdown) == any(r["kind"] == "fault" and r["covered"] and r["outcome"] == "missed"
                                            for r in rows)


MIXED = '''

def build_mixed():
    """A forward that makes its own float32 tensor: `model.to(bfloat16)` alone cannot run it."""
    class Mixed(Mini):
        def forward(self, ids):
            h = self.emb[ids] + torch.zeros(8)
            return h @ self.out
    return Mixed()


def build_fp32_only():
    class Fussy(Mini):
        def forward(self, ids):
            if self.out.dtype != torch.float32:
                raise RuntimeError("this model runs in float32 only")
            return super().forward(ids)
    return Fussy()
'''


def _two_token_project(mini, clauses, n=4):
    """An eval set of ``n`` samples of 2 tokens (one scored position each): --derive's split holds 2."""
    lines = [json.dumps({"id": f"t{i}", "input_ids": [i % 16, (3 * i + 1) % 16]}) for i in range(n)]
    (mini.root / "eval.jsonl").write_text("\n".join(lines) + "\n")
    (mini.root / "model.py").write_text((mini.root / "model.py").read_text() + MIXED)
    return mini.contract(clauses=clauses)


def test_a_split_too_small_for_a_rule_keeps_the_written_bound_with_a_warning_never_a_vacuous_one(mini):
    """Issue 20 item 1: 2 calibration positions made the rule of three write `argmax min: -0.8`, which
    then passed a candidate with 6 % agreement. Now the clause keeps its written bound, the table and
    stderr say why, and the derived contract fails a σ = 100 noise candidate."""
    path = _two_token_project(mini, [{"id": "argmax", "metric": "argmax_agree", "stat": "mean", "min": 0.9},
                                     {"id": "kl", "metric": "kl", "stat": "mean", "max": 1e-3}])
    out = path.with_name("derived.yaml")
    result = CliRunner().invoke(cli, ["calibrate", str(path), "--derive", str(out), "--faults", "none",
                                      "--format", "json"])
    doc = json.loads(result.stdout)
    jsonschema.validate(doc, load_schema("calibration"))
    rows = {r["clause"]: r for r in doc["derived"]["bounds"]}
    assert not rows["argmax"]["derived"] and rows["argmax"]["bound"] == 0.9, rows["argmax"]
    assert rows["argmax"]["reason"].startswith("the calibration split is too small for this rule: it gives min -0.8")
    assert "promote: warning: not derivable: `argmax`" in result.stderr
    assert yaml.safe_load(out.read_text())["numerical"]["clauses"][0]["min"] == 0.9
    loud = yaml.safe_load(out.read_text())
    loud["candidate"]["inject"] = {"fault": "noise", "sigma": 100.0}  # the repro
    loud_path = path.with_name("loud.yaml")
    loud_path.write_text(yaml.safe_dump(loud))
    check = CliRunner().invoke(cli, ["check", str(loud_path), "--format", "json"])
    report = json.loads(check.stdout)
    argmax = next(c for s in report["stages"] for c in s["clauses"] if c["id"] == "argmax")
    assert check.exit_code == 1 and argmax["status"] == "fail", argmax
    markdown = CliRunner().invoke(cli, ["calibrate", str(path), "--derive", str(out), "--faults", "none"]).stdout
    assert "Not derivable (1; the written bound is kept):" in markdown


@pytest.mark.parametrize(("written", "message"), [
    # Always passes: the contract itself is refused (validate and calibrate alike), naming the line.
    (-0.8, "clause `argmax`: `min: -0.8` can never fail"),
    # Always fails (beyond the top of [0, 1]): valid as a contract, but --derive has no honest bound to write.
    (1.5, "--derive cannot bound `argmax`"),
])
def test_a_written_bound_that_cannot_fail_either_is_refused_with_exit_2(mini, written, message):
    path = _two_token_project(mini, [{"id": "argmax", "metric": "argmax_agree", "stat": "mean", "min": written}])
    result = CliRunner().invoke(cli, ["calibrate", str(path), "--derive", str(path.with_name("d.yaml")),
                                      "--faults", "none"])
    assert result.exit_code == 2, result.output
    assert message in result.output and f"min: {written}" in result.output
    assert not path.with_name("d.yaml").exists()


def test_bitwise_equal_calibration_derives_from_float_resolution_not_max_0(mini):
    """Issue 20 item 2: identical kernels give 0 everywhere; `max: 0` would block any honest kernel
    that is not bit-identical. The bound is the float resolution of the candidate's precision."""
    from promote.bounds import PRECISION_EPS, float_resolution
    from promote.calibrate.rules import round_up

    path = mini.contract(clauses=[{"id": "kl", "metric": "kl", "stat": "mean", "max": 1e-3},
                                  {"id": "osc", "metric": "logit_osc", "stat": "max", "max": 1.0},
                                  {"id": "top", "metric": "topk_overlap", "k": 3, "stat": "mean", "min": 0.5}])
    result = CliRunner().invoke(cli, ["calibrate", str(path), "--derive", str(path.with_name("d.yaml")),
                                      "--output", f"json={path.with_name('cal.json')}", "--faults", "none"])
    assert result.exit_code == 0, result.output
    doc = json.loads(path.with_name("cal.json").read_text())
    rows = {r["clause"]: r for r in doc["derived"]["bounds"]}
    for cid in ("kl", "osc"):
        assert rows[cid]["derived"] and rows[cid]["bound"] > 0, rows[cid]
        assert rows[cid]["rule"].startswith("zero drift on the calibration split (bitwise-equal outputs): float "
                                            "resolution of fp32 outputs, ε = 2^-23"), rows[cid]
    z = float(re.search(r"magnitude Z = ([0-9.e+-]+)", rows["kl"]["rule"]).group(1))
    assert rows["kl"]["bound"] == pytest.approx(round_up(float_resolution("kl", z, PRECISION_EPS["fp32"]) * 1.2),
                                                rel=1e-2)
    assert rows["top"]["derived"] and rows["top"]["rule"].startswith("no disagreement in "), rows["top"]
    assert 0.5 < rows["top"]["bound"] < 1


def test_a_model_cast_fault_runs_a_model_that_mixes_dtypes_under_autocast(mini):
    """Issue 20 item 6: `bf16-model` on a forward that makes its own float32 tensors crashed (`expected
    m1 and m2 to have the same dtype`) and the error rows still ended in exit 0. It now runs as
    `precision: bf16` runs such a model, and says so."""
    (mini.root / "model.py").write_text((mini.root / "model.py").read_text() + MIXED)
    path = mini.contract(candidate="build_mixed", reference="build_mixed", precision="bf16")
    result = CliRunner().invoke(cli, ["calibrate", str(path), "--faults", "bf16-model,fp16-model", "--format",
                                      "json"])
    doc = json.loads(result.stdout)
    rows = {r["name"]: r for r in doc["variants"]}
    for name in ("bf16-model", "fp16-model"):
        assert rows[name]["outcome"] != "error", rows[name]
    assert result.exit_code in (0, 1) and not doc["errors"], doc["errors"]


def test_an_error_row_is_exit_3_and_never_no_problems(mini):
    """A fault row whose kernel crashes (here: a forward that refuses non-float32 weights, under the
    cast and under autocast alike) is `error`: exit 3, "Could not evaluate", never "No problems"."""
    (mini.root / "model.py").write_text((mini.root / "model.py").read_text() + MIXED)
    path = mini.contract(candidate="build_fp32_only")
    page = path.with_name("cal.html")
    result = CliRunner().invoke(cli, ["calibrate", str(path), "--faults", "bf16-model,temperature-0.9",
                                      "--output", f"html={page}"])
    assert result.exit_code == 3, result.output
    assert "Could not evaluate (1)" in page.read_text() and "None: every legitimate" not in page.read_text()
    assert "| bf16-model | fault | 💥 error |" in result.stdout
    assert "Could not evaluate (exit 3):" in result.stdout and "No problems" not in result.stdout


def test_calibrate_output_fmt_path_like_check_and_the_old_flags_still_work(mini, tmp_path):
    path = mini.contract()
    args = ["calibrate", str(path), "--faults", "temperature-0.9", "--output", f"json={tmp_path / 'a.json'}",
            "--output", f"markdown={tmp_path / 'a.md'}", "--html", str(tmp_path / "a.html")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "a.json").read_text())["schema"] == "promote-calibration/1"
    assert (tmp_path / "a.md").read_text() == result.stdout
    assert "calibration-heatmap" in (tmp_path / "a.html").read_text()
    bad = CliRunner().invoke(cli, ["calibrate", str(path), "--output", "pdf=x.pdf"])
    assert bad.exit_code == 2 and "unknown format 'pdf'" in bad.output


def test_a_one_sample_eval_set_is_inconclusive_never_every_legitimate_variant_passes(mini):
    """Issue 20 item 6: with one sample every legitimate row was `inconclusive`, yet the summary said
    "every legitimate variant passes" (exit 0). Inconclusive legitimate rows are problems: exit 1."""
    lines = (mini.root / "eval.jsonl").read_text().splitlines()[:1]
    (mini.root / "eval.jsonl").write_text(lines[0] + "\n")
    path = mini.contract(extra={"slices": [{"name": "group", "by": "tags.group"}],
                                "statistical": {"min_samples": 2, "clauses": [
                                    {"id": "s", "metric": "kl", "stat": "mean", "max": 1e-3, "per_slice": True,
                                     "slices": ["group"]}]}})
    result = CliRunner().invoke(cli, ["calibrate", str(path), "--faults", "none"])
    assert result.exit_code == 1, result.output
    assert "| honest | honest | ❔ inconclusive |" in result.stdout and "No problems" not in result.stdout
    assert "- honest variant `honest` is inconclusive on s: the contract is not shown to pass" in result.stdout
