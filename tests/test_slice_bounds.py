"""Per-slice bounds (`slice_bounds`, issue 13 item 3 / complaint d): each slice is judged against its
own bound, so the noisiest slice no longer sets the bound of every other; bad keys are exit 2 naming the
contract line; `calibrate --derive` writes per-slice bounds where slices differ and checks them held out."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml
from test_slices import FAULTS, KL_SLICE, check, contract, invoke, slice_results

from promote.calibrate.derive import derive, slice_factor, write_derived
from promote.contract.model import load_contract
from promote.contract.statistical import glob_regex
from promote.resources import load_schema

LOOSE, TIGHT = 10.0, 1e-3  # g=b under the group-b fault: mean KL far above 1e-3 and far below 10


@pytest.fixture
def faulty(mini):
    mini.write("faults.py", FAULTS)
    return mini


def _by_slice(faulty, clause):
    """(the slice stage's status, its results by slice label)."""
    _, report = check(contract(faulty, clauses=[clause], candidate="faults.py:build_group_b"))
    stage, results = slice_results(report)
    return stage["status"], {c["slice"]: c for c in results}


def test_a_slice_passes_under_its_own_looser_bound_that_the_clause_bound_fails(faulty):
    status, plain = _by_slice(faulty, {**KL_SLICE, "max": TIGHT})
    assert plain["g=b"]["status"] == "fail" and status == "fail"
    status, by = _by_slice(faulty, {**KL_SLICE, "max": TIGHT, "slice_bounds": {"g=b": {"max": LOOSE}}})
    assert by["g=b"]["status"] == "pass" and by["g=a"]["status"] == "pass" and status == "pass"
    assert by["g=b"]["bounds"] == [{"op": "max", "value": LOOSE}] and by["g=b"]["evidence"]["slice_bound"] == "g=b"
    assert by["g=a"]["bounds"] == [{"op": "max", "value": TIGHT}] and "slice_bound" not in by["g=a"]["evidence"]
    assert "≤ 10" in by["g=b"]["message"] or "10" in by["g=b"]["message"]


def test_a_slice_fails_its_own_tighter_bound_that_the_clause_bound_passes(faulty):
    status, plain = _by_slice(faulty, {**KL_SLICE, "max": LOOSE})
    assert {c["status"] for c in plain.values()} == {"pass"} and status == "pass"
    # First match wins: `g=b` before the catch-all `g=*`; g=a falls to `g=*` (loose), g=b to its tight bound.
    bounds = {"g=b": {"max": TIGHT}, "g=*": {"max": LOOSE / 2}}
    status, by = _by_slice(faulty, {**KL_SLICE, "max": LOOSE, "slice_bounds": bounds})
    assert by["g=b"]["status"] == "fail" and by["g=b"]["bounds"][0]["value"] == TIGHT and status == "fail"
    assert by["g=a"]["status"] == "pass" and by["g=a"]["evidence"]["slice_bound"] == "g=*"
    assert by["g=a"]["bounds"][0]["value"] == LOOSE / 2


def test_worst_slice_gate_judges_each_slice_against_its_own_bound(faulty):
    clause = {"id": "worst", "metric": "kl", "stat": "max_over_slices", "max": TIGHT,
              "slice_bounds": {"g=b": {"max": LOOSE}}}
    _, report = check(contract(faulty, clauses=[clause], candidate="faults.py:build_group_b"))
    (only,) = slice_results(report)[1]
    assert only["status"] == "pass", only["message"]
    assert {e["slice"]: e["bounds"]["max"] for e in only["evidence"]["slices"]} == {"g=a": TIGHT, "g=b": LOOSE}


@pytest.mark.parametrize(("extra", "message"), [
    ({"slice_bounds": {"g=b": {"min": 0.1}}}, "sets `min` but the clause bounds `max`"),
    ({"slice_bounds": {"g=b": {"max": float("inf")}}}, "must be a finite number"),
    ({"slice_bounds": {"g=b": {}}}, "slice_bounds"),
    ({"slice_bounds": {"g=b": {"max": "high"}}}, "slice_bounds"),
    ({"slice_bounds": {"g=b": {"max": 1, "extra": 2}}}, "extra"),
    ({"per_slice": False, "slice_bounds": {"g=b": {"max": 1}}}, "needs `per_slice: true`"),
])
def test_bad_slice_bounds_are_exit_2_with_the_line(mini, extra, message):
    path = contract(mini, clauses=[{**KL_SLICE, **extra}])
    result = invoke("validate", "--no-data", str(path))
    assert result.exit_code == 2, result.output
    assert message in result.stderr and f"{path}:" in result.stderr


def test_task_clause_takes_its_own_bound_kind(mini):
    clause = {"id": "acc", "metric": "accuracy", "max_drop": 0.01, "per_slice": True,
              "slice_bounds": {"g=a": {"max": 0.1}}}
    result = invoke("validate", "--no-data", str(contract(mini, clauses=[clause])))
    assert result.exit_code == 2 and "sets `max` but the clause bounds `max_drop`" in result.stderr
    clause["slice_bounds"] = {"g=a": {"max_drop": 0.05}}
    assert invoke("validate", "--no-data", str(contract(mini, clauses=[clause]))).exit_code == 0


def test_a_pattern_matching_no_declared_family_is_a_warning(mini):
    path = contract(mini, clauses=[{**KL_SLICE, "slice_bounds": {"script=latin": {"max": 1}, "g=*": {"max": 1}}}])
    result = invoke("validate", "--no-data", str(path))
    assert result.exit_code == 0, result.output
    assert "`script=latin` matches no slice family of the clause (g)" in result.stderr
    assert "`g=*`" not in result.stderr


def test_patterns_are_literal_except_star_and_question_mark():
    assert glob_regex("length=[0,64)").fullmatch("length=[0,64)")
    assert not glob_regex("length=[0,64)").fullmatch("length=0")
    assert glob_regex("script_len:script=latin,*").fullmatch("script_len:script=latin,length=[0,128)")
    assert glob_regex("g=?").fullmatch("g=a") and not glob_regex("g=?").fullmatch("g=ab")


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiny_lm"


def _slices_example(tmp: Path, per_script: int = 24) -> Path:
    """The slices example on the first ``per_script`` samples of each script, with a candidate that is
    legitimately noisier on Cyrillic (σ = 0.05 on its logits: mean KL ~1e-3 against ~8e-5 elsewhere)."""
    for name in ("model.py", "weights.safetensors"):
        (tmp / name).symlink_to(EXAMPLE / name)
    lines = (EXAMPLE / "eval.jsonl").read_text().splitlines()
    (tmp / "eval.jsonl").write_text("\n".join(x for b in range(4) for x in lines[80 * b: 80 * b + per_script]) + "\n")
    doc = yaml.safe_load((EXAMPLE / "slices.yaml").read_text())
    doc["candidate"]["model"] = "model.py:build"
    doc["candidate"]["inject"] = {"fault": "noise", "sigma": 0.05, "where": {"tags": {"script": "cyrillic"}}}
    doc["slices"] = [s for s in doc["slices"] if s["name"] in ("script", "length", "entropy")]
    doc.pop("numerical")
    doc.pop("escalation")
    doc["statistical"]["min_samples"] = 8
    doc["statistical"]["clauses"] = [
        {"id": "slice-kl", "metric": "kl", "stat": "mean", "max": 1e-3, "per_slice": True, "slices": ["script"]},
        {"id": "worst-kl", "metric": "kl", "stat": "max_over_slices", "max": 1e-3, "slices": ["script", "entropy"]},
    ]
    path = tmp / "slices.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_derive_writes_per_slice_bounds_where_slices_differ_and_they_hold_out_of_sample(tmp_path):
    contract_, _ = load_contract(_slices_example(tmp_path))
    derived = derive(contract_)
    assert derived["problems"] == []
    jsonschema.validate({"split": derived["split"], "margin": derived["margin"], "bounds": derived["bounds"],
                         "problems": []}, load_schema("calibration")["properties"]["derived"])
    rows = {r["clause"]: r for r in derived["bounds"] if r["stage"] == "slices"}
    for row in rows.values():
        own = {o["slice"]: o for o in row["slice_bounds"]}
        # Cyrillic is the noisy slice: it sets the clause-wide bound and gets no bound of its own; the quiet
        # scripts get theirs, each over (1 + margin)× tighter (here ~10×), by the stated rule, passing held out.
        assert set(own) == {"script=latin", "script=cjk", "script=code"}, row
        assert row["per_slice"]["script=cyrillic"] == row["calibration"]
        for label, o in own.items():
            assert row["bound"] > slice_factor(0.2) * o["bound"]
            assert o["bound"] >= o["confidence_bound"] > o["calibration"]
            assert o["rule"] == "95 % UCB of the slice mean × (1 + margin)"
            assert o["held_out"]["status"] == "pass" and o["held_out"]["bound"] == o["bound"], (label, o)
            assert o["held_out"]["observed"] < o["bound"]
    # Entropy quartiles are cut from the data (labels differ between splits): never given their own bound.
    assert not any(o["slice"].startswith("entropy") for o in rows["worst-kl"]["slice_bounds"])
    written = write_derived(contract_, derived, tmp_path / "derived.yaml")
    (clause,) = [c for c in written.statistical.clauses if c.id == "slice-kl"]
    assert clause.max == rows["slice-kl"]["bound"]
    assert clause.for_slice("script=latin")[0].max == {o["slice"]: o for o in rows["slice-kl"]["slice_bounds"]}[
        "script=latin"]["bound"]
    assert clause.for_slice("script=cyrillic") == (clause, None)
